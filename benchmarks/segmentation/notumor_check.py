"""False positives of segmentation checkpoints on the Kaggle ``Testing/notumor`` images, and on the demo samples.

Independent of the CV: the Kaggle test images were never used to train a segmenter. Images whose file is a
``kaggle_twin`` of a row of the given BRISC folder (of the labels trained on) are left out. Each checkpoint is
evaluated with ``evaluate_segmenter`` on a temporary ``slices.csv`` (label ``notumor``, no mask, each image
its own group), so the false-positive rate is the one ``evaluate-seg`` defines: the segmentation is at least
the pipeline's disagreement area on the classifier's input grid. The demo samples
(``src/brainxai/samples/*.jpg``) are measured the same way (segmented area on the classifier's grid).

    python benchmarks/segmentation/notumor_check.py --checkpoint old=runs/seg/refit6/best.safetensors \\
        --checkpoint new=src/brainxai/weights/segmentation.safetensors --brisc ../shared/data/brisc-masks-dev \\
        --out benchmarks/segmentation/notumor
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX
from brainxai.evaluation.segmentation import (
    classifier_grid_scale,
    evaluate_segmenter,
    flags_lesion,
    shipped_classifier_preprocess,
)
from brainxai.io.raster import read_raster
from brainxai.segmentation import Segmenter
from brainxai.util.files import atomic_write_text

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "brainxai" / "samples"


def kaggle_images(kaggle: Path, brisc: Path | None, labels: set[str]) -> tuple[list[Path], list[str]]:
    """``Testing/notumor`` images, and the ones left out as twins of a BRISC row with one of ``labels``."""
    twins: set[str] = set()
    if brisc is not None:
        with open(brisc / "slices.csv", newline="") as fh:
            twins = {r["kaggle_twin"].strip() for r in csv.DictReader(fh) if r["label"] in labels}
    images: list[Path] = []
    excluded: list[str] = []
    for path in sorted((kaggle / "Testing" / "notumor").glob("*.jpg")):
        rel = f"Testing/notumor/{path.name}"
        if rel in twins:
            excluded.append(rel)
        else:
            images.append(path)
    return images, excluded


def _folder(images: list[Path], root: Path) -> Path:
    with open(root / "slices.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "mask", "label", "patient"])
        w.writerows([str(p), "", "notumor", p.name] for p in images)
    return root


def samples(checkpoint: Path) -> dict[str, Any]:
    """Segmented area on the classifier's input grid of each demo sample, and whether the rule flags it."""
    seg = Segmenter.load(checkpoint, device="cpu")
    pre = shipped_classifier_preprocess()
    out = {}
    for path in sorted(SAMPLES.glob("*.jpg")):
        image = read_raster(path)
        mask = seg.segment(image)
        scale = classifier_grid_scale(image, pre)
        out[path.stem] = {
            "area_px": int(mask.sum()),
            "area_model_grid_px": round(float(mask.sum()) * scale, 1),
            "sizeable_lesion": flags_lesion(mask, scale),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="NAME=PATH, repeatable")
    ap.add_argument("--kaggle", type=Path, default=Path("../shared/data/brain-tumor-mri"))
    ap.add_argument("--brisc", type=Path, default=None, help="BRISC folder trained on (its kaggle_twin column)")
    ap.add_argument("--labels", default="notumor", help="BRISC labels trained on (comma-separated)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/segmentation/notumor"))
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    images, excluded = kaggle_images(args.kaggle, args.brisc, set(args.labels.split(",")))
    result: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "images": len(images),
        "excluded_twins": excluded,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = _folder(images, Path(tmp))
        for spec in args.checkpoint:
            name, path = spec.split("=", 1)
            seg = evaluate_segmenter(folder, Path(tmp) / name, checkpoint=path, n_boot=args.n_boot, device="cpu")
            result["models"][name] = {
                "checkpoint": path,
                "sha256": seg["model"]["sha256"],
                "false_positive_rate": seg["false_positive_rate"],
                "ci95": seg["ci95"]["false_positive_rate"],
                "n": seg["n_no_tumour"],
                "samples": samples(Path(path)),
            }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "notumor.json", json.dumps(result, indent=2))
    atomic_write_text(args.out / "notumor.md", report(result))


def report(result: dict[str, Any]) -> str:
    lines = [
        "# Segmenter false positives on Kaggle Testing/notumor",
        "",
        "Research use only, not a diagnostic device.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"{result['images']} images of `brain-tumor-mri/Testing/notumor` ({len(result['excluded_twins'])} left out "
        "as twins of a BRISC slice trained on). False positive: the segmentation is at least "
        f"{MIN_LESION_AREA_MODEL_PX:g} px² on the classifier's input grid (the pipeline's disagreement rule); 95% CI "
        "from a bootstrap over images.",
        "",
        "| model | checkpoint | sha256 | images | false-positive rate | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in result["models"].items():
        lo, hi = m["ci95"]
        lines.append(
            f"| {name} | `{m['checkpoint']}` | {m['sha256'][:12]} | {m['n']} | {m['false_positive_rate']:.3f} | "
            f"{lo:.3f}-{hi:.3f} |"
        )
    lines += [
        "",
        "Demo samples (`src/brainxai/samples/`): segmented area on the classifier's input grid (px²), flagged = "
        "the disagreement rule's size reached.",
        "",
        "| model | " + " | ".join(next(iter(result["models"].values()))["samples"]) + " |",
        "|---|" + "---|" * len(next(iter(result["models"].values()))["samples"]),
    ]
    for name, m in result["models"].items():
        cells = [
            f"{s['area_model_grid_px']:.0f}{' (flagged)' if s['sizeable_lesion'] else ''}"
            for s in m["samples"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
