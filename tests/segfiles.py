"""Synthetic segmentation folders for the tests (imported as ``segfiles``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

#: The main folder's columns (``train-seg --data``).
COLUMNS = ("file", "mask", "label", "patient")


def head(size: int = 80) -> np.ndarray:
    """A grey disk standing in for a head on a black background."""
    img = np.zeros((size, size), np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 2 - 4, 90, -1)
    return img


def write_csv(root: Path, rows: list[list[str]], header: tuple[str, ...] = COLUMNS) -> None:
    """``root/slices.csv`` with ``header`` and ``rows``."""
    with open(root / "slices.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_seg_folder(root: Path, n_patients: int = 3, per_patient: int = 2, size: int = 80) -> Path:
    """Slices of a grey 'head' with a bright disk (the tumour) and its mask, ``per_patient`` slices per patient."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for p in range(n_patients):
        for k in range(per_patient):
            img = head(size)
            cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
            mask = np.zeros_like(img)
            cv2.circle(mask, (cx, cy), 8, 255, -1)
            img[mask > 0] = 230
            name = f"glioma_{p}_{k}"
            cv2.imwrite(str(root / "images" / f"{name}.png"), img)
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
            rows.append([f"images/{name}.png", f"masks/{name}.png", "glioma", f"PAT{p}"])
    write_csv(root, rows)
    return root
