"""How often the contour crop fails, and what the threshold-20 retry does about it.

For every image of a class-per-folder dataset: the crop box at threshold 45 alone (``fallback_threshold=None``)
and with the retry (the default), as a share of the image. Writes ``crop_audit.md`` (counts, the images whose
crop changed) and ``crop_audit.jpg``: the smallest threshold-45 crops (green) beside the crops with the retry
(red), for looking at them.

    python experiments/crop_audit/crop_audit.py --data ../shared/data/brain-tumor-mri --out experiments/crop_audit
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from brainxai.constants import DISCLAIMER
from brainxai.data.dataset import discover_samples
from brainxai.data.preprocess import SMALL_CROP_FRACTION, contour_crop, crop_fraction
from brainxai.io import read_raster

TILE = 224


def _tile(
    image: np.ndarray, boxes: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]], label: str
) -> np.ndarray:
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    width = max(1, image.shape[0] // 150)
    for (x0, y0, x1, y1), colour in boxes:
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), colour, width)
    rgb = cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)
    cv2.putText(rgb, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    return rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="Dataset root with Training/ and Testing/.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--show", type=int, default=20, help="How many of the smallest crops to draw.")
    args = ap.parse_args()

    rows = []
    for split in ("Training", "Testing"):
        for sample in discover_samples(args.data / split):
            image = read_raster(sample.path)
            before = contour_crop(image, fallback_threshold=None)[1]
            after = contour_crop(image)[1]
            rows.append(
                {
                    "file": str(sample.path.relative_to(args.data)),
                    "split": split,
                    "before": before,
                    "after": after,
                    "f_before": crop_fraction(before, image.shape),
                    "f_after": crop_fraction(after, image.shape),
                }
            )
    changed = [r for r in rows if r["before"] != r["after"]]
    failed_before = [r for r in rows if r["f_before"] < SMALL_CROP_FRACTION]
    failed_after = [r for r in rows if r["f_after"] < SMALL_CROP_FRACTION]

    args.out.mkdir(parents=True, exist_ok=True)
    smallest = sorted(rows, key=lambda r: r["f_before"])[: args.show]
    tiles = [
        _tile(
            read_raster(args.data / r["file"]),
            [(r["before"], (0, 255, 0)), (r["after"], (0, 0, 255))],
            f"{Path(r['file']).name} {r['f_before']:.2f}->{r['f_after']:.2f}",
        )
        for r in smallest
    ]
    while len(tiles) % 5:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i : i + 5]) for i in range(0, len(tiles), 5)])
    cv2.imwrite(str(args.out / "crop_audit.jpg"), grid, [cv2.IMWRITE_JPEG_QUALITY, 80])

    n_test = sum(r["split"] == "Testing" for r in rows)
    lines = [
        "# Contour-crop audit",
        "",
        f"Reproduce: `python experiments/crop_audit/crop_audit.py --data {args.data} --out {args.out}`",
        "",
        f"> {DISCLAIMER}",
        "",
        f"Images: {len(rows)} ({n_test} in Testing). A crop is counted as failed when its box covers less than "
        f"{SMALL_CROP_FRACTION:.0%} of the image (`brainxai.data.preprocess.SMALL_CROP_FRACTION`).",
        "",
        "| | threshold 45 alone | with the retry at threshold 20 (shipped) |",
        "|---|---|---|",
        (
            f"| failed crops, all images | {len(failed_before)} ({len(failed_before) / len(rows):.1%}) "
            f"| {len(failed_after)} |"
        ),
        f"| failed crops, Testing | {sum(r['split'] == 'Testing' for r in failed_before)} | "
        f"{sum(r['split'] == 'Testing' for r in failed_after)} |",
        "",
        f"The retry changed the crop of {len(changed)} images. `crop_audit.jpg`: the {len(smallest)} smallest "
        "threshold-45 crops (green) and the crops with the retry (red); the label gives both shares of the image.",
        "",
        "| image | share at 45 | share with the retry |",
        "|---|---|---|",
        *(
            f"| {r['file']} | {r['f_before']:.3f} | {r['f_after']:.3f} |"
            for r in sorted(changed, key=lambda r: r["f_before"])
        ),
        "",
    ]
    (args.out / "crop_audit.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
