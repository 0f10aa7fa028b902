"""Segmentation disagreement as a second flag on a held-out source's missed tumours (see README.md).

    python experiments/segmenter_safety_net/run.py --out experiments/segmenter_safety_net
    python experiments/segmenter_safety_net/run.py --exact --out experiments/segmenter_safety_net/exact

Needs the committed LOSO run's fold models in ``runs/loso/<source>/best.*`` (``benchmarks/loso/loso.md`` names
the command) and ``../shared/data``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from brainxai.analysis.lesion import disagreement, measure_lesion
from brainxai.constants import CLASSES, NO_TUMOUR
from brainxai.data.audit import reference_images, twins_of
from brainxai.data.dataset import Sample
from brainxai.data.sources import derive_sources, loso_split
from brainxai.inference import Classifier
from brainxai.pipeline import steps
from brainxai.pipeline.segment import model_scale
from brainxai.segmentation import Segmenter

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
KAGGLE = DATA / "brain-tumor-mri"
BATCH = 32


def _segmenter_training_images() -> list[Path]:
    """Everything the shipped segmenter may have trained on (a superset: all of Kaggle ``Training/notumor``)."""
    return (
        reference_images(DATA / "figshare-masks-dev" / "slices.csv")
        + reference_images(DATA / "brisc-masks-dev" / "slices.csv")
        + sorted((KAGGLE / "Training" / "notumor").glob("*.jpg"))
    )


def _exact_training_images() -> list[Path]:
    """The shipped segmenter's training images exactly (``experiments/seg_input_size/refit.sh``): figshare-dev,
    BRISC's no-tumour slices and Kaggle ``Training/notumor`` without the twins of a ``Testing/notumor`` image
    (``experiments/seg_brisc_masks/make_kaggle_notumor.py``)."""
    brisc = [
        DATA / "brisc-masks-dev" / r["file"]
        for r in csv.DictReader((DATA / "brisc-masks-dev" / "slices.csv").open(newline=""))
        if r["label"] == NO_TUMOUR
    ]
    label = CLASSES.index(NO_TUMOUR)
    train = sorted((KAGGLE / "Training" / "notumor").glob("*.jpg"))
    test = sorted((KAGGLE / "Testing" / "notumor").glob("*.jpg"))
    twins = set(twins_of([Sample(p, label) for p in train], test, progress=False))
    kaggle = [p for i, p in enumerate(train) if i not in twins]
    return reference_images(DATA / "figshare-masks-dev" / "slices.csv") + brisc + kaggle


def _kept(paths: list[str], references: list[Path], exact: bool) -> tuple[list[str], int]:
    """The held-out source's images the segmenter never saw, and how many were left out."""
    candidates = paths if exact else [p for p in paths if not p.startswith("Training/notumor/")]
    samples = [Sample(KAGGLE / p, CLASSES.index(Path(p).parent.name)) for p in candidates]
    twins = set(twins_of(samples, references, progress=False))
    kept = [p for i, p in enumerate(candidates) if i not in twins]
    return kept, len(paths) - len(kept)


def _rows(paths: list[str], fold: Classifier, shipped: Classifier, segmenter: Segmenter) -> list[dict[str, Any]]:
    """Per image: the fold classifier's call and flag, the shipped segmenter's lesion and the warning."""
    rows: list[dict[str, Any]] = []
    notumor = list(fold.classes).index(NO_TUMOUR)
    for start in tqdm(range(0, len(paths), BATCH), desc="images", unit="batch"):
        chunk = paths[start : start + BATCH]
        scans = [steps.read(KAGGLE / p) for p in chunk]
        prepared = [steps.prepare(s.pixels, fold) for s in scans]
        probs, scores = steps.assess(fold, prepared)
        masks = [segmenter.mask(p) for p in segmenter.probability([s.pixels for s in scans])]
        for p, scan, prob, score, mask in zip(chunk, scans, probs, scores, masks, strict=True):
            lesion = measure_lesion(mask, None, model_scale(steps.prepare(scan.pixels, shipped)))
            called_tumour = int(prob.argmax()) != notumor
            rows.append(
                {
                    "path": p,
                    "label": Path(p).parent.name,
                    "predicted": fold.classes[int(prob.argmax())],
                    "p_no_tumour": round(float(prob[notumor]), 5),
                    "domain_score": round(float(score), 4),
                    "flagged": bool(score > fold.domain_threshold),
                    "lesion_model_px": round(float(lesion.area_model_px), 1),
                    "warning": disagreement(called_tumour, lesion) is not None,
                }
            )
    return rows


def _share(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Share of True with a 95% percentile bootstrap interval over images."""
    if not len(values):
        return {"n": 0, "share": None, "ci95": None}
    rng = np.random.default_rng(seed)
    boot = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    return {
        "n": int(len(values)),
        "count": int(values.sum()),
        "share": float(values.mean()),
        "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    }


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tumour = np.array([r["label"] != NO_TUMOUR for r in rows], bool)
    missed = np.array([r["predicted"] == NO_TUMOUR for r in rows], bool) & tumour
    flagged = np.array([r["flagged"] for r in rows], bool)
    warned = np.array([r["warning"] for r in rows], bool)
    normal_called_normal = ~tumour & np.array([r["predicted"] == NO_TUMOUR for r in rows], bool)
    return {
        "tumours_called_no_tumour": _share(missed[tumour]),
        "silent_without_segmentation": _share((missed & ~flagged)[tumour]),
        "silent_with_segmentation": _share((missed & ~flagged & ~warned)[tumour]),
        "misses_caught_by_warning": _share(warned[missed]),
        "false_alarms_on_normals": _share(warned[normal_called_normal]),
        "normals_called_no_tumour": int(normal_called_normal.sum()),
        "per_class_called_no_tumour": {
            c: _share(missed[np.array([r["label"] == c for r in rows])])
            for c in CLASSES
            if c != NO_TUMOUR and any(r["label"] == c for r in rows)
        },
    }


def _pct(entry: dict[str, Any]) -> str:
    if entry["share"] is None:
        return "—"
    lo, hi = entry["ci95"]
    return f"{entry['share']:.3f} [{lo:.3f}, {hi:.3f}] ({entry['count']}/{entry['n']})"


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Segmentation disagreement on a held-out source's missed tumours",
        "",
        f"Command: `{report['command']}`; {report['seconds']:.0f} s. Counting rule: `README.md`.",
        "",
        "| held out | images kept (left out) | tumours called no tumour | silent (no OOD flag) | silent with the "
        "segmentation warning too | misses caught by the warning | normals called no tumour with a false warning |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fold in report["folds"].items():
        f = fold["figures"]
        lines.append(
            f"| {name} | {fold['kept']} ({fold['left_out']}) | {_pct(f['tumours_called_no_tumour'])} | "
            f"{_pct(f['silent_without_segmentation'])} | {_pct(f['silent_with_segmentation'])} | "
            f"{_pct(f['misses_caught_by_warning'])} | {_pct(f['false_alarms_on_normals'])} |"
        )
    lines += ["", "Per class, tumours called no tumour:", ""]
    for name, fold in report["folds"].items():
        for c, e in fold["figures"]["per_class_called_no_tumour"].items():
            lines.append(f"- {name}, {c}: {_pct(e)}")
    lines += ["", "_Research use only; not a medical device._", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "loso")
    parser.add_argument("--held-out", nargs="+", default=["sartaj", "br35h"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--exact", action="store_true", help="Leave out the segmenter's exact training images, not the superset."
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    labels = derive_sources(KAGGLE, progress=False)
    references = _exact_training_images() if args.exact else _segmenter_training_images()
    shipped, segmenter = Classifier.load(), Segmenter.load()
    folds: dict[str, Any] = {}
    for source in args.held_out:
        kept, left_out = _kept(loso_split(labels, source)[1], references, args.exact)
        fold = Classifier.load(args.runs / source / "best.safetensors")
        rows = _rows(kept, fold, shipped, segmenter)
        folds[source] = {"kept": len(kept), "left_out": left_out, "figures": _figures(rows)}
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / f"{source}_per_image.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    report = {
        "command": "python experiments/segmenter_safety_net/run.py " + shlex.join(sys.argv[1:]),
        "seconds": time.perf_counter() - t0,
        "shipped_segmenter_sha256": segmenter.sha256,
        "folds": folds,
    }
    (args.out / "result.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "result.md").write_text(_markdown(report))


if __name__ == "__main__":
    main()
