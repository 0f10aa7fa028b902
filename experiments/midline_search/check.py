"""Does the coarse-to-fine midline search find the same midline as scoring every column?

For each slice: the brain mask as the pipeline makes it, the expert tumour mask (figshare) or none
(Kaggle no-tumour) as the excluded region; ``estimate_midline`` with ``_COARSE_STEP`` = 1 (every column,
the search before) and with each coarse step given; counts slices whose estimate differs (None vs a
value, or any coordinate/shift/quality not equal) and times both.

    python experiments/midline_search/check.py --steps 2 3 4 --out experiments/midline_search/result.json
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from brainxai.analysis.region import brain_mask
from brainxai.analysis.spatial import midline

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared beside the checkout


def slices(limit: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """figshare dev slices with their expert masks, then Kaggle Testing no-tumour slices without."""
    out: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    root = DATA / "figshare-masks-dev"
    with open(root / "slices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[:: max(len(rows) // limit, 1)][:limit]:
        image = cv2.imread(str(root / row["file"]), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(root / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
        out.append((row["file"], image, mask))
    for path in sorted((DATA / "brain-tumor-mri" / "Testing" / "notumor").glob("*.jpg"))[: limit // 4]:
        out.append((path.name, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), None))
    return out


def estimates(data: list[tuple[str, np.ndarray, np.ndarray | None]], step: int) -> tuple[list, float]:
    midline._COARSE_STEP = step
    found, start = [], time.perf_counter()
    for _, image, mask in data:
        found.append(midline.estimate_midline(image, brain_mask(image), mask))
    return found, (time.perf_counter() - start) / len(data) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = slices(args.limit)
    reference, ref_ms = estimates(data, 1)
    result = {
        "slices": len(data),
        "found_by_every_column": sum(e is not None for e in reference),
        "ms_per_slice": {"1": ref_ms},
        "differ": {},
    }
    for step in args.steps:
        found, ms = estimates(data, step)
        result["ms_per_slice"][str(step)] = ms
        result["differ"][str(step)] = [name for (name, _, _), a, b in zip(data, reference, found) if a != b]
    midline._COARSE_STEP = 1
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in result["differ"].items()}),
        result["ms_per_slice"],
        result["found_by_every_column"],
        len(data),
    )


if __name__ == "__main__":
    main()
