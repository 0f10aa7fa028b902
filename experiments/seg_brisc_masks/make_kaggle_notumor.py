"""Kaggle ``Training/notumor`` as one more no-tumour folder for the segmenter study (``train-seg --extra-data``).

The images whose pHash (or mirror image's) lies within the audit's twin distance of a ``Testing/notumor`` image
are left out, so that ``benchmarks/segmentation/notumor_check.py`` still scores images the models never saw.
Writes ``runs/seg/data-kaggle-notumor/kaggle-notumor/slices.csv`` (``file,mask,label``; empty masks) with an
``images`` link to the shared folder; each image is its own group.

    python experiments/seg_brisc_masks/make_kaggle_notumor.py
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from brainxai.constants import CLASSES
from brainxai.data.audit import twins_of
from brainxai.data.dataset import Sample

ROOT = Path(__file__).resolve().parents[2]
KAGGLE = ROOT.parent / "shared" / "data" / "brain-tumor-mri"


def main() -> None:
    out = ROOT / "runs" / "seg" / "data-kaggle-notumor" / "kaggle-notumor"
    label = CLASSES.index("notumor")
    train = sorted((KAGGLE / "Training" / "notumor").glob("*.jpg"))
    test = sorted((KAGGLE / "Testing" / "notumor").glob("*.jpg"))
    twins = set(twins_of([Sample(p, label) for p in train], test))
    kept = [p for i, p in enumerate(train) if i not in twins]
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        os.symlink(KAGGLE / "Training" / "notumor", out / "images")
    with (out / "slices.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "mask", "label"])
        writer.writerows([f"images/{p.name}", "", "notumor"] for p in kept)
    left_out = [train[i].name for i in sorted(twins)]
    (out.parent / "left_out.json").write_text(json.dumps({"twins_of_testing": left_out}, indent=1))
    print(f"{len(kept)} kept, {len(left_out)} left out as twins of Testing/notumor")


if __name__ == "__main__":
    main()
