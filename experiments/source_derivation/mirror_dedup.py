"""How many de-duplicated Testing images have a mirrored (left-right flipped) twin in Training?

The duplicate audit (``brainxai audit-data``) compares pHashes of the images as stored; this applies the
same rule (64-bit pHash, Hamming distance <= the audit's threshold) to each de-duplicated test image
flipped left to right, and writes the test images that have neither kind of twin.

Usage, from the repository root:
    python experiments/source_derivation/mirror_dedup.py
    brainxai evaluate --data ../shared/data/brain-tumor-mri \\
        --subset experiments/source_derivation/dedup_mirror_free.txt --out runs/eval_mirror_free
"""

import collections
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from brainxai.data.audit import audit_dataset, near_pairs

ROOT = Path("../shared/data/brain-tumor-mri")
OUT = Path(__file__).resolve().parent / "dedup_mirror_free.txt"


def bits(img: Image.Image) -> np.ndarray:
    return np.asarray(imagehash.phash(img.convert("L")).hash, dtype=bool).ravel()


report = audit_dataset(ROOT, progress=False)
dedup = report["dedup_test"]
train = np.stack([bits(Image.open(p)) for p in sorted((ROOT / "Training").glob("*/*.jpg"))])
flipped = np.stack([bits(ImageOps.mirror(Image.open(ROOT / d))) for d in dedup])
mirrored = {i for i, _, _ in near_pairs(flipped, train, report["max_distance"])}
per_class = collections.Counter(Path(dedup[i]).parts[-2] for i in sorted(mirrored))
print(f"de-duplicated test images: {len(dedup)}; with a mirrored twin in Training: {len(mirrored)} {dict(per_class)}")
free = [d for i, d in enumerate(dedup) if i not in mirrored]
OUT.write_text("\n".join(free) + "\n")
print(f"without either twin: {len(free)}, written to {OUT.name}")
