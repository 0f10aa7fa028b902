"""Per-source metrics of an evaluation: how a model does on the images of each public source.

The Kaggle set mixes figshare, SARTAJ and Br35H (see :mod:`brainxai.data.sources`). A model trained
on every source gives per-source figures that say where it is weaker, not how it generalises to an
unseen source; only a model trained without a source (``TrainConfig.exclude_sources``) gives a
leave-one-source-out figure on that source. The report says which one a figure is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.data.sources import SOURCES, UNKNOWN, SourceLabel, derive_sources, read_sources_csv
from brainxai.evaluation.metrics import confusion_matrix, proportion_bootstrap_ci, wilson_interval

logger = logging.getLogger(__name__)

#: ``by_source`` value that derives the labels from the evaluated dataset instead of reading a CSV.
DERIVE = "auto"


def load_source_labels(
    by_source: str | Path | Sequence[SourceLabel], data: Path, cache_dir: str | Path | None, progress: bool
) -> list[SourceLabel]:
    """Source labels from a CSV (``brainxai sources``), from ``data`` itself (``"auto"``), or as given.

    Raises:
        DatasetLayoutError: ``"auto"`` on a folder that is not a Kaggle-layout root with ``Training/``.
    """
    if isinstance(by_source, (str, Path)):
        if str(by_source) == DERIVE:
            return derive_sources(data, progress=progress, cache_dir=cache_dir)
        return read_sources_csv(by_source)
    return list(by_source)


def sources_of(rel_paths: Sequence[str], labels: Sequence[SourceLabel], test_folder_name: str) -> list[str]:
    """The source of each evaluated image (paths relative to ``--data``); ``unknown`` where unlabelled.

    Labels are relative to the dataset root; when ``--data`` was the test folder itself, its images
    are looked up under ``<test folder name>/`` as well.
    """
    index = {os.path.normpath(lab.path): lab.source for lab in labels}
    out = []
    for p in rel_paths:
        key = os.path.normpath(p)
        out.append(index.get(key, index.get(os.path.normpath(os.path.join(test_folder_name, p)), UNKNOWN)))
    missing = sum(1 for p, s in zip(rel_paths, out) if s == UNKNOWN and os.path.normpath(p) not in index)
    if missing:
        logger.warning("%d of %d evaluated images have no source label: counted as %r", missing, len(out), UNKNOWN)
    return out


def _source_entry(y: np.ndarray, pred: np.ndarray, classes: Sequence[str], n_boot: int, seed: int) -> dict[str, Any]:
    correct = y == pred
    per_class: dict[str, Any] = {}
    for k, c in enumerate(classes):
        mine = y == k
        if not mine.any():
            continue  # a class this source does not have: no recall to report
        ci = proportion_bootstrap_ci(correct[mine], n_boot, seed)
        per_class[c] = {
            "support": int(mine.sum()),
            "recall": float(correct[mine].mean()),
            "recall_ci95": list(ci) if ci else None,
            # The bootstrap collapses to a point when every (or no) image is right; Wilson does not.
            "recall_wilson95": list(wilson_interval(int(correct[mine].sum()), int(mine.sum()))),
        }
    ci = proportion_bootstrap_ci(correct, n_boot, seed)
    return {
        "n": int(len(y)),
        "accuracy": float(correct.mean()),
        "accuracy_ci95": list(ci) if ci else None,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y, pred, len(classes)).tolist(),
    }


def source_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    sources: Sequence[str],
    classes: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Accuracy and per-class recall, each with a 95% percentile-bootstrap interval, per source.

    Args:
        y: ``(N,)`` true class indices.
        probs: ``(N, C)`` predicted probabilities.
        sources: The source of each image.
        classes: Class names, in column order.
        n_boot: Bootstrap resamples (images of the source, or of the class within it).
        seed: Bootstrap seed.

    Returns:
        ``{source: {n, accuracy, accuracy_ci95, per_class: {class: {support, recall, recall_ci95,
        recall_wilson95}}, confusion_matrix}}`` in the order of :data:`SOURCES` (then ``unknown``); classes a source
        does not have are absent from its ``per_class``.
    """
    src = np.asarray(sources)
    pred = np.asarray(probs).argmax(axis=1)
    y = np.asarray(y)
    out: dict[str, dict[str, Any]] = {}
    for name in (*SOURCES, UNKNOWN):
        mine = src == name
        if mine.any():
            out[name] = _source_entry(y[mine], pred[mine], classes, n_boot, seed)
    return out


def _cell(entry: dict[str, Any], c: str) -> str:
    r = entry["per_class"].get(c)
    if r is None:
        return "—"
    ci = r["recall_ci95"]
    return f"{r['recall']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] (n={r['support']})" if ci else f"{r['recall']:.3f}"


def by_source_markdown(
    by_source: dict[str, dict[str, dict[str, Any]]], classes: Sequence[str], excluded_sources: Sequence[str]
) -> list[str]:
    """Report lines: one table per evaluated subset, a row per source, and what kind of figure it is."""
    held = ", ".join(excluded_sources)
    kind = (
        f"The checkpoint was trained without {held} (`exclude_sources`): its rows for {held} are "
        "leave-one-source-out figures; the other rows are not."
        if excluded_sources
        else "The checkpoint was trained on every source: these are per-source figures of a model that saw "
        "each source in training, **not** leave-one-source-out figures."
    )
    lines = ["## By source", "", kind, ""]
    for subset, entries in by_source.items():
        lines += [
            f"### {subset}",
            "",
            "| source | n | accuracy [95% CI] | " + " | ".join(f"{c} recall [95% CI]" for c in classes) + " |",
            "|---|---|---|" + "---|" * len(classes),
        ]
        for name, e in entries.items():
            ci = e["accuracy_ci95"]
            acc = f"{e['accuracy']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{e['accuracy']:.4f}"
            lines.append(f"| {name} | {e['n']} | {acc} | " + " | ".join(_cell(e, c) for c in classes) + " |")
        lines.append("")
    lines += [
        "Sources from `brainxai.data.sources` (tumour classes: JPEG colour mode; no tumour: file number). "
        "Intervals: percentile bootstrap over the source's images (for a recall, over its images of that class). "
        "— : the source has no image of that class. When every image of a class is right the bootstrap interval "
        "collapses to [1, 1]: that is no certainty (`metrics.json` also gives the 95% Wilson interval, "
        "`recall_wilson95`; for 4 of 4 it is [0.51, 1]).",
        "",
    ]
    return lines
