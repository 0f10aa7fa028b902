"""How far the segmenter's Dice holds when the same slices arrive with another contrast or resolution.

Users' scans are not the figshare JPEG export the segmenter was trained on: a NIfTI or DICOM file is
windowed by the reader (``brainxai.io.nifti.volume_to_uint8``: 0.5-99.5 percentile stretch), another
scanner's contrast differs (gamma), and many archives hold lower-resolution slices. Each CV fold model
segments its own validation slices (figshare patients it never saw + the no-tumour groups it never saw)
as they are and perturbed, with one mask rule (threshold and post-processing of ``--mask-from``, default
the shipped JSON):

- ``as stored``: the slice as read,
- ``NIfTI window``: ``volume_to_uint8`` of the slice (what reading it from a NIfTI file gives),
- ``gamma 0.67`` / ``gamma 1.5``: ``255 (x / 255) ** g``,
- ``half resolution``: down to half size (area) and back up (bilinear).

Per perturbation and fold set: pooled mean tumour Dice (all, per class) and the false-positive rate on the
no-tumour slices (the pipeline's disagreement rule). Research use only, not a diagnostic device.

    OMP_NUM_THREADS=1 python benchmarks/segmentation/robustness.py --runs runs/seg/cvneg12 \\
        --data ../shared/data/figshare-masks-dev --extra ../shared/data/brisc-masks-dev \\
        --out benchmarks/segmentation/robustness
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainxai.constants import NO_TUMOUR
from brainxai.data.seg_dataset import SegSlice, load_pair, read_sources
from brainxai.evaluation.segmentation import classifier_grid_scale, dice, flags_lesion, shipped_classifier_preprocess
from brainxai.io.nifti import volume_to_uint8
from brainxai.segmentation import Segmenter, default_segmenter_path
from brainxai.segmentation.postprocess import PostProcess
from brainxai.util.files import atomic_write_text

CLASSES = ("glioma", "meningioma", "pituitary")


def _gamma(g: float) -> Callable[[np.ndarray], np.ndarray]:
    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
    return lambda x: lut[x]


def _half(x: np.ndarray) -> np.ndarray:
    h, w = x.shape
    small = cv2.resize(x, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as stored": lambda x: x,
    "NIfTI window": volume_to_uint8,
    "gamma 0.67": _gamma(0.67),
    "gamma 1.5": _gamma(1.5),
    "half resolution": _half,
}


def fold_rows(run: Path, data: Path, extra: Path, mask_from: Path) -> dict[str, list[dict[str, Any]]]:
    """Per perturbation, one row per validation slice of the fold in ``run``: label, Dice or false positive."""
    val = set(json.loads((run / "best.json").read_text())["split"]["val_patients"])
    slices: list[SegSlice] = [s for s in read_sources(data, [extra], ["notumor"]) if s.patient in val]
    seg = Segmenter.load(run / "best.safetensors", device="cpu")
    seg.use_mask_rule(json.loads(mask_from.read_text()))
    pre = shipped_classifier_preprocess()
    pairs = [load_pair(s) for s in slices]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in PERTURBATIONS}
    for name, perturb in PERTURBATIONS.items():
        images = [perturb(image) for image, _ in pairs]
        probs = seg.probability(images)
        for s, image, (_, truth), prob in zip(slices, images, pairs, probs, strict=True):
            pred = seg.mask(prob)
            if s.label == NO_TUMOUR:
                rows[name].append({"label": s.label, "fp": flags_lesion(pred, classifier_grid_scale(image, pre))})
            else:
                rows[name].append({"label": s.label, "dice": dice(pred, truth)})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled mean tumour Dice (all, per class) and the false-positive rate of the no-tumour rows."""
    tumour = [r for r in rows if r["label"] != NO_TUMOUR]
    out: dict[str, Any] = {
        "dice_mean": float(np.mean([r["dice"] for r in tumour])),
        "fp_rate": float(np.mean([r["fp"] for r in rows if r["label"] == NO_TUMOUR])),
        "n_tumour": len(tumour),
        "n_no_tumour": len(rows) - len(tumour),
    }
    out |= {c: float(np.mean([r["dice"] for r in tumour if r["label"] == c])) for c in CLASSES}
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The report: one table per fold set, a row per perturbation."""
    lines = [
        "# Segmenter robustness: the same slices with another contrast or resolution",
        "",
        "Research use only, not a diagnostic device.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Mask rule: threshold {result['threshold']}, post-processing {result['postprocess']} (from "
        f"`{result['mask_from']}`). Slices: each fold model's own validation patients and no-tumour groups. "
        "Dice: pooled mean over tumour slices; FP: share of no-tumour slices the pipeline would flag.",
    ]
    for runs, table in result["runs"].items():
        lines += [
            "",
            f"## `{runs}`",
            "",
            "| input | Dice | glioma | meningioma | pituitary | FP rate |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in table.items():
            lines.append(
                f"| {name} | {s['dice_mean']:.3f} | {s['glioma']:.3f} | {s['meningioma']:.3f} | {s['pituitary']:.3f} "
                f"| {s['fp_rate']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="CV run folders holding fold*/best.*")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--extra", type=Path, required=True, help="no-tumour slices folder (BRISC dev)")
    ap.add_argument("--mask-from", type=Path, default=None, help="checkpoint JSON of the mask rule (default: shipped)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/segmentation/robustness"))
    args = ap.parse_args(argv)
    mask_from = args.mask_from or default_segmenter_path().with_suffix(".json")
    meta = json.loads(mask_from.read_text())
    result: dict[str, Any] = {
        "command": "python benchmarks/segmentation/robustness.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "mask_from": str(mask_from),
        "threshold": meta["threshold"],
        "postprocess": PostProcess.from_dict(meta.get("postprocess")).describe() if meta.get("postprocess") else "none",
        "runs": {},
    }
    for runs in args.runs:
        pooled: dict[str, list[dict[str, Any]]] = {name: [] for name in PERTURBATIONS}
        for fold in sorted(p for p in runs.glob("fold*") if p.is_dir()):
            for name, rows in fold_rows(fold, args.data, args.extra, mask_from).items():
                pooled[name] += rows
        result["runs"][str(runs)] = {name: summary(rows) for name, rows in pooled.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    atomic_write_text(args.out.with_suffix(".md"), md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
