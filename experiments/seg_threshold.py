"""One-off: the segmenter's mask threshold chosen on the CV folds (tumour Dice against no-tumour false positives).

Each CV fold model segments its own validation slices (figshare patients + BRISC no-tumour groups it never saw);
the probability maps are thresholded at several values and scored as ``evaluate-seg`` scores them (tumour Dice on
the original grid; false positive = the pipeline's disagreement rule on the classifier's grid). Rule fixed
before looking: the threshold with the lowest pooled false-positive rate whose pooled mean tumour Dice stays
within 0.02 of the previous recipe's CV (0.730) and glioma Dice within 0.02 of its 0.620.

    python experiments/seg_threshold.py --runs runs/seg/cvneg --out experiments/seg_threshold.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.constants import NO_TUMOUR
from brainxai.data.seg_dataset import load_pair, read_sources
from brainxai.evaluation.segmentation import (
    classifier_grid_scale,
    dice,
    flags_lesion,
    shipped_classifier_preprocess,
)
from brainxai.segmentation import Segmenter
from brainxai.util.files import atomic_write_text

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def fold_rows(run: Path, data: Path, extra: Path, labels: list[str]) -> dict[float, list[dict[str, Any]]]:
    seg = Segmenter.load(run / "best.safetensors", device="cpu")
    val = set(json.loads((run / "best.json").read_text())["split"]["val_patients"])
    slices = [s for s in read_sources(data, [extra], labels) if s.patient in val]
    pre = shipped_classifier_preprocess()
    rows: dict[float, list[dict[str, Any]]] = {t: [] for t in THRESHOLDS}
    for start in range(0, len(slices), 16):
        part = slices[start : start + 16]
        pairs = [load_pair(s) for s in part]
        probs = seg.probability([img for img, _ in pairs])
        for s, (image, truth), prob in zip(part, pairs, probs):
            scale = classifier_grid_scale(image, pre)
            for t in THRESHOLDS:
                pred = prob >= t
                rows[t].append(
                    {
                        "label": s.label,
                        "dice": dice(pred, truth),
                        "fp": s.label == NO_TUMOUR and flags_lesion(pred, scale),
                    }
                )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    tumour = [r for r in rows if r["label"] != NO_TUMOUR]
    neg = [r for r in rows if r["label"] == NO_TUMOUR]
    out = {"dice_mean": float(np.mean([r["dice"] for r in tumour])), "fp_rate": float(np.mean([r["fp"] for r in neg]))}
    for c in ("glioma", "meningioma", "pituitary"):
        out[c] = float(np.mean([r["dice"] for r in tumour if r["label"] == c]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=Path("runs/seg/cvneg"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/figshare-masks-dev"))
    ap.add_argument("--extra", type=Path, default=Path("../shared/data/brisc-masks-dev"))
    ap.add_argument("--out", type=Path, default=Path("experiments/seg_threshold.json"))
    args = ap.parse_args()
    pooled: dict[float, list[dict[str, Any]]] = {t: [] for t in THRESHOLDS}
    for i in (0, 1):
        for t, rows in fold_rows(args.runs / f"fold{i}", args.data, args.extra, ["notumor"]).items():
            pooled[t] += rows
    table = {str(t): summary(rows) for t, rows in pooled.items()}
    ok = [t for t in table if table[t]["dice_mean"] >= 0.730 - 0.02 and table[t]["glioma"] >= 0.620 - 0.02]
    chosen = min(ok, key=lambda t: (table[t]["fp_rate"], float(t))) if ok else None
    result = {"command": shlex.join(["python", *sys.argv]), "thresholds": table, "chosen": chosen}
    atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
