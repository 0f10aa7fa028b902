"""Evaluating a checkpoint on a test folder: raw split and de-duplicated subset.

Writes ``metrics.json`` (``{"raw": M, "dedup": M}``, or one ``M`` for an explicit subset; with
``by_source``, also ``"by_source": {subset: {source: ...}}``), ``predictions.csv``, PNG plots and
``report.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.constants import DISCLAIMER
from brainxai.data.audit import DEFAULT_MAX_DISTANCE, audit_dataset, read_subset
from brainxai.data.dataset import Sample, decode_samples, discover_samples
from brainxai.data.sources import SourceLabel
from brainxai.evaluation.by_source import by_source_markdown, load_source_labels, source_metrics, sources_of
from brainxai.evaluation.metrics import classification_metrics
from brainxai.evaluation.plots import (
    confusion_matrix_figure,
    reliability_figure,
    roc_figure,
    save_figure,
    training_curves_figure,
)
from brainxai.inference import Classifier

logger = logging.getLogger(__name__)


def resolve_test_folder(data: str | Path) -> Path:
    """``DIR/Testing`` when present, else ``DIR`` itself (a class-per-folder test set)."""
    p = Path(data)
    return p / "Testing" if (p / "Testing").is_dir() else p


def predict_folder(
    classifier: Classifier, samples: list[Sample], cache_dir: str | None = None, progress: bool = True
) -> tuple[list[Sample], np.ndarray]:
    """Probabilities for every readable sample, fed with the classifier's own preprocessing."""
    decoded = decode_samples(samples, classifier.preprocess, cache_dir=cache_dir, progress=progress)
    return decoded.samples, classifier.predict_proba_prepared(decoded.images)


def _select(rel_paths: list[str], wanted: list[str]) -> np.ndarray:
    index = {p: i for i, p in enumerate(rel_paths)}
    norm = [os.path.normpath(w) for w in wanted]
    missing = [w for w in norm if w not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} subset path(s) are not images of the evaluated folder, e.g. {missing[:3]}; "
            "subset paths must be relative to --data"
        )
    return np.array(sorted(index[w] for w in norm), dtype=np.int64)


def _dedup_subset(
    data: Path,
    test_folder: Path,
    dedup_list: str | Path | None,
    max_distance: int,
    progress: bool,
    cache_dir: str | None = None,
) -> tuple[list[str], str] | None:
    """The de-duplicated test images and how they were chosen: from ``dedup_list``, else an audit of ``data``."""
    if dedup_list is not None:
        return read_subset(dedup_list), f"test images listed in {dedup_list}"
    if (data / "Training").is_dir():
        audit = audit_dataset(data, max_distance=max_distance, progress=progress, cache_dir=cache_dir)
        return audit["dedup_test"], (
            f"test images with no near-twin in Training ({audit['method']}); "
            f"{audit['test_with_train_twin']} of {audit['n_test']} removed "
            f"({audit['mirror_twins']} of them found only through their mirror image)"
        )
    logger.warning("no Training folder beside %s and no --dedup-list: reporting the raw split only", test_folder)
    return None


def _subsets(
    rel: list[str],
    data: Path,
    test_folder: Path,
    subset: str | Path | None,
    dedup_list: str | Path | None,
    max_distance: int,
    progress: bool,
    cache_dir: str | None = None,
) -> dict[str, tuple[np.ndarray, str]]:
    """``{name: (image indices, description)}``: the explicit subset alone, or ``raw`` and (when known) ``dedup``."""
    if subset is not None:
        return {"subset": (_select(rel, read_subset(subset)), f"images listed in {subset}")}
    subsets = {"raw": (np.arange(len(rel)), f"every readable image of {test_folder}")}
    dedup = _dedup_subset(data, test_folder, dedup_list, max_distance, progress, cache_dir)
    if dedup is not None:
        subsets["dedup"] = (_select(rel, dedup[0]), dedup[1])
    return subsets


def _measure(
    subsets: dict[str, tuple[np.ndarray, str]],
    y: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    n_boot: int,
    out: Path,
) -> dict[str, dict[str, Any]]:
    """Metrics per subset, with its confusion matrix, ROC and reliability figures written to ``out``."""
    metrics: dict[str, Any] = {}
    for name, (idx, description) in subsets.items():
        m = classification_metrics(y[idx], probs[idx], classes, n_boot=n_boot)
        m["description"] = description
        metrics[name] = m
        save_figure(
            confusion_matrix_figure(m["confusion_matrix"], classes, f"Confusion matrix ({name}, n={m['n']})"),
            str(out / f"confusion_{name}.png"),
        )
        aucs = [m["per_class"][c]["auc"] for c in classes]
        save_figure(roc_figure(y[idx], probs[idx], classes, aucs), str(out / f"roc_{name}.png"))
        save_figure(reliability_figure(y[idx], probs[idx], m["ece"]), str(out / f"reliability_{name}.png"))
    return metrics


def evaluate(
    data: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    subset: str | Path | None = None,
    dedup_list: str | Path | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    n_boot: int = 1000,
    device: str = "auto",
    cache_dir: str | None = ".cache/brainxai",
    progress: bool = True,
    by_source: str | Path | Sequence[SourceLabel] | None = None,
) -> dict[str, Any]:
    """Evaluates a checkpoint (default: the shipped model) and writes the result files.

    Args:
        data: Dataset root (with ``Testing/``, and ``Training/`` for the duplicate audit) or a
            class-per-folder test folder.
        out: Output folder.
        checkpoint: Checkpoint path; None uses the shipped default model.
        subset: File of image paths relative to ``data``: evaluate only those (one result).
        dedup_list: De-duplicated test list from ``brainxai audit-data``; when absent and
            ``data/Training`` exists, the audit runs here.
        max_distance: pHash distance for the on-the-fly audit.
        n_boot: Bootstrap resamples for confidence intervals.
        device: Inference device.
        cache_dir: Decoded-image and image-hash cache.
        progress: Show progress bars.
        by_source: Also report metrics per image source (:mod:`brainxai.evaluation.by_source`): a
            sources CSV from ``brainxai sources``, ``"auto"`` to derive the sources from ``data`` (a
            Kaggle-layout root), or the labels themselves.

    Returns:
        The content of ``metrics.json``.
    """
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier.load(checkpoint, device=device)
    test_folder = resolve_test_folder(data)
    samples, probs = predict_folder(classifier, discover_samples(test_folder, classifier.classes), cache_dir, progress)
    rel = [os.path.relpath(s.path, data) for s in samples]
    y = np.array([s.label for s in samples], dtype=np.int64)
    classes = list(classifier.classes)
    subsets = _subsets(rel, data, test_folder, subset, dedup_list, max_distance, progress, cache_dir)
    metrics = _measure(subsets, y, probs, classes, n_boot, out)
    history = classifier.checkpoint.meta.history
    if history:
        save_figure(training_curves_figure(history), str(out / "training_curves.png"))
    result: dict[str, Any] = dict(metrics["subset"] if subset is not None else metrics)
    extra: list[str] = []
    if by_source is not None:
        labels = load_source_labels(by_source, data, cache_dir, progress)
        sources = np.array(sources_of(rel, labels, test_folder.name))
        per_source = {
            name: source_metrics(y[idx], probs[idx], sources[idx], classes, n_boot)
            for name, (idx, _) in subsets.items()
        }
        result["by_source"] = per_source
        excluded = list(classifier.checkpoint.meta.recipe.get("exclude_sources") or [])
        extra = by_source_markdown(per_source, classes, excluded)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    _write_predictions(out / "predictions.csv", rel, y, probs, classes)
    (out / "report.md").write_text(_report_markdown(metrics, classifier, data, history, extra))
    return result


def _write_predictions(path: Path, rel: list[str], y: np.ndarray, probs: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "true", "predicted", "correct", *[f"p_{c}" for c in classes]])
        for p, t, pr in zip(rel, y, probs):
            k = int(pr.argmax())
            w.writerow([p, classes[t], classes[k], int(k == t), *[f"{v:.5f}" for v in pr]])


def _fmt_ci(m: dict[str, Any], key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{m[key]:.4f}"


def _report_markdown(
    metrics: dict[str, Any],
    classifier: Classifier,
    data: Path,
    history: list[dict[str, Any]],
    extra: Sequence[str] = (),
) -> str:
    ck = classifier.checkpoint
    lines = [
        "# brainxai evaluation",
        "",
        f"Model: `{ck.meta.model}` (checkpoint `{ck.weights_path.name}`, sha256 `{ck.sha256[:16]}`), data: `{data}`.",
        f"Preprocessing: {ck.meta.preprocess.to_dict()}.",
    ]
    if classifier.temperature != 1.0:
        fitted_on = ck.meta.calibration.get("fitted_on")
        where = f", fitted on the {fitted_on}" if fitted_on else ""
        lines.append(
            f"Probabilities: softmax(logits / T) with temperature T = {classifier.temperature:.4f} "
            f"(temperature scaling{where})."
        )
    lines += [
        "",
        "| split | n | accuracy [95% CI] | macro-F1 [95% CI] | macro AUC | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        auc = f"{m['macro_auc']:.4f}" if m["macro_auc"] is not None else "n/a"
        lines.append(
            f"| {name} | {m['n']} | {_fmt_ci(m, 'accuracy')} | {_fmt_ci(m, 'macro_f1')} | {auc} | {m['ece']:.4f} |"
        )
    lines.append("")
    for name, m in metrics.items():
        lines += [
            f"## {name}: {m['description']}",
            "",
            "| class | precision | recall (sensitivity) | specificity | F1 | AUC | support |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, r in m["per_class"].items():
            auc = f"{r['auc']:.4f}" if r["auc"] is not None else "n/a"
            lines.append(
                f"| {c} | {r['precision']:.4f} | {r['recall']:.4f} | {r['specificity']:.4f} | {r['f1']:.4f} "
                f"| {auc} | {r['support']} |"
            )
        lines += [
            "",
            f"![confusion](confusion_{name}.png) ![roc](roc_{name}.png) ![reliability](reliability_{name}.png)",
            "",
        ]
    lines += list(extra)
    if history:
        lines += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    lines += [
        (
            "Confidence intervals: percentile bootstrap over images (1,000 resamples). "
            "ECE: 15 equal-width confidence bins."
        ),
        "",
        f"_{DISCLAIMER}_",
        "",
    ]
    return "\n".join(lines)
