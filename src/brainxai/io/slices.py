"""Choosing the slice of a volume (NIfTI, multi-frame DICOM) to analyse."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from brainxai.io.raster import ImageReadError

#: Scores a list of 2-D ``uint8`` slices; higher means more suspicious.
SliceScorer = Callable[[Sequence[np.ndarray]], Sequence[float]]


def pick_slice(
    slices: Sequence[np.ndarray], scorer: SliceScorer | None, name: str, min_tissue: float = 0.25
) -> tuple[int, dict[str, Any]]:
    """Chooses the slice of a volume to analyse.

    Slices with little tissue (less than ``min_tissue`` of the fullest slice's tissue area) are not
    candidates: near-empty end slices give meaningless model scores.

    Returns:
        The chosen index and metadata describing how it was chosen.
    """
    tissue = np.array([_tissue_fraction(s) for s in slices])
    if tissue.max() <= 0:
        raise ImageReadError(f"{name}: every slice is empty")
    candidates = [i for i, t in enumerate(tissue) if t >= min_tissue * tissue.max()]
    if scorer is None:
        best = int(np.argmax(tissue))
        return best, {"slice_selection": f"slice with the most tissue of {len(slices)} axial slices"}
    scores = [float(s) for s in scorer([slices[i] for i in candidates])]
    if len(scores) != len(candidates):
        raise ValueError(f"slice scorer returned {len(scores)} scores for {len(candidates)} slices")
    best = candidates[int(np.argmax(scores))]
    return best, {
        "slice_selection": (
            f"most suspicious of {len(candidates)} scored axial slices "
            f"({len(slices)} in the volume; near-empty slices skipped)"
        ),
        "slice_scores": {str(i): round(s, 4) for i, s in zip(candidates, scores)},
    }


def _tissue_fraction(image: np.ndarray) -> float:
    if image.max() == image.min():
        return 0.0
    _, mask = cv2.threshold(image, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(mask.mean())
