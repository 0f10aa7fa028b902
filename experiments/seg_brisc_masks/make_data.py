"""The BRISC rows used by the study: tumour slices whose image is not a copy of a figshare-dev slice, and all
no-tumour slices, as a folder in the BRISC layout (``slices.csv`` plus links to its ``images/`` and ``masks/``).

A tumour row is dropped when its Kaggle twin (``kaggle_twin``) has a figshare-masks-dev twin in
``experiments/source_derivation/sources.csv`` (``figshare_dev_slice``): those images are the dev slices again
and would sit on both sides of the patient folds. The folder keeps the name ``brisc-masks-dev`` so its slices'
group names (``brisc-masks-dev:<name>``) are those of the shared folder.

    python experiments/seg_brisc_masks/make_data.py   # -> runs/seg/data-brisc-nodev/brisc-masks-dev
    python experiments/seg_brisc_masks/make_data.py --neg-copies 2   # -> runs/seg/data-brisc-neg2/...

``--neg-copies N`` lists every no-tumour row N times (one group: the copies stay in one fold), N times the
weight in training.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BRISC = ROOT.parent / "shared" / "data" / "brisc-masks-dev"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neg-copies", type=int, default=1)
    args = ap.parse_args()
    folder = "data-brisc-nodev" if args.neg_copies == 1 else f"data-brisc-neg{args.neg_copies}"
    out = ROOT / "runs" / "seg" / folder / "brisc-masks-dev"
    sources = {r["file"]: r for r in csv.DictReader((ROOT / "experiments/source_derivation/sources.csv").open())}
    rows = list(csv.DictReader((BRISC / "slices.csv").open()))
    keep = [
        r
        for r in rows
        if r["label"] == "notumor" or not (sources.get(r["kaggle_twin"]) or {}).get("figshare_dev_slice")
    ]
    keep += [r for r in keep if r["label"] == "notumor"] * (args.neg_copies - 1)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks"):
        if not (out / name).exists():
            os.symlink(BRISC / name, out / name)
    with (out / "slices.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    print(len(keep), dict(Counter(r["label"] for r in keep)))


if __name__ == "__main__":
    main()
