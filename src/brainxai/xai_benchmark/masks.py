"""Map metrics against a lesion mask: the pointing game and the energy inside the mask.

The mask counterparts of the box metrics (:mod:`brainxai.explain.quality`): computed, like them, on the
map placed back into the original scan, with the mask on the scan's pixel grid, so the pointing-game
tolerance is in original pixels. :func:`mask_to_input` brings a mask into the model input the way
:func:`~brainxai.explain.quality.box_to_input` brings a box (crop, then resize to the input square).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from brainxai.explain.quality import POINTING_TOLERANCE, Box
from brainxai.pipeline.steps import map_back
from brainxai.xai_benchmark.data import BoxImages

#: Per-image keys of the mask metrics (``xai_per_image.csv``, ``xai.json`` when the CSV has masks).
MASK_METRICS: tuple[str, ...] = ("pointing_game_mask", "energy_in_mask")


def _finite(relevance: np.ndarray) -> np.ndarray:
    if relevance.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {relevance.shape}")
    return np.nan_to_num(relevance.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _check_shapes(relevance: np.ndarray, mask: np.ndarray) -> None:
    if relevance.shape != mask.shape:
        raise ValueError(f"map {relevance.shape} and mask {mask.shape} differ in shape")


def distance_to_mask(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of every pixel to the nearest mask pixel; 0 inside, inf for an empty mask."""
    binary = np.asarray(mask) != 0
    if not binary.any():
        return np.full(binary.shape, np.inf)
    # distanceTransform measures the distance to the nearest zero pixel: make the mask the zeros.
    return cv2.distanceTransform((~binary).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE).astype(np.float64)


def pointing_game_mask(relevance: np.ndarray, mask: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> bool:
    """Whether the map's maximum lies within ``tolerance`` pixels of the mask.

    Same conventions as the box pointing game: ties at the maximum hit when any of them is within
    tolerance; a map without positive values, or an empty mask, is a miss.
    """
    _check_shapes(relevance, mask)
    r = _finite(relevance)
    peak = r.max()
    if peak <= 0:
        return False
    return bool((distance_to_mask(mask)[r == peak] <= tolerance).any())


def energy_in_mask(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive relevance inside the mask, in [0, 1] (0 for a map without positive values)."""
    _check_shapes(relevance, mask)
    pos = np.maximum(_finite(relevance), 0.0)
    total = pos.sum()
    if total <= 0:
        return 0.0
    return float(pos[np.asarray(mask) != 0].sum() / total)


def placed_mask_metrics(mapped: np.ndarray, mask: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> dict[str, Any]:
    """``pointing_game_mask`` (1.0 hit, 0.0 miss) and ``energy_in_mask`` of a map on the scan's pixel grid."""
    return {
        "pointing_game_mask": float(pointing_game_mask(mapped, mask, tolerance)),
        "energy_in_mask": energy_in_mask(mapped, mask),
    }


def mask_metrics(
    i: int, relevance: np.ndarray, data: BoxImages, tolerance: float = POINTING_TOLERANCE
) -> dict[str, Any]:
    """The mask metrics of a model-input map, placed back into scan ``i`` of ``data`` (empty when no masks)."""
    if data.masks is None:
        return {}
    return placed_mask_metrics(map_back(relevance, data.images[i]), data.masks[i], tolerance)


def mask_to_input(mask: np.ndarray, crop: Box, size: int) -> np.ndarray:
    """A mask in original pixels brought into the ``size`` x ``size`` model input made from ``crop``.

    The crop is cut out and resized to the input square with nearest-neighbour sampling, as
    preprocessing does with the scan (which it resizes bilinearly).
    """
    x0, y0, x1, y1 = (int(v) for v in crop)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {crop}")
    cut = (np.asarray(mask) != 0)[y0:y1, x0:x1].astype(np.uint8)
    return cv2.resize(cut, (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
