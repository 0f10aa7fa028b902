"""Head mask and the relevance-derived "tumour region".

Both are plain image operations on 2-D arrays, documented so a reader can reproduce them:

- :func:`brain_mask`: the head (foreground) of a slice. Otsu threshold of the smoothed scan (lowered
  so dark brain tissue stays in), opening to drop speckle, the largest connected component, closing,
  and hole filling. It is the whole head, skull and scalp included: no skull stripping is attempted
  on single 2-D slices.
- :func:`relevance_region`: the region an explanation points at. The positive part of the map is
  smoothed, restricted to the head, thresholded, and the strongest connected component (by summed
  relevance) is kept together with any component holding at least ``keep_fraction`` of its relevance.

The region is derived from a relevance map: it shows where the model's evidence is, not a
segmentation of the tumour.
"""

from __future__ import annotations

import cv2
import numpy as np


def _odd(n: float) -> int:
    k = max(3, round(n))
    return k if k % 2 else k + 1


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fills the holes of a binary mask (background not connected to the image border)."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    # Flood the background from outside through a one-pixel frame; whatever stays unreached is a hole.
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = m
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask.astype(bool) | holes


def brain_mask(image: np.ndarray) -> np.ndarray:
    """The head (foreground) of a grayscale slice.

    Args:
        image: ``(H, W)`` ``uint8`` scan.

    Returns:
        ``(H, W)`` bool mask: one connected region without holes. An empty or flat image gives an
        all-False mask.
    """
    if image.ndim != 2:
        raise ValueError(f"brain_mask expects a 2-D grayscale array, got shape {image.shape}")
    img = image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    h, w = img.shape
    size = max(h, w)
    smooth = cv2.GaussianBlur(img, (_odd(size / 100), _odd(size / 100)), 0)
    if int(smooth.max()) == int(smooth.min()):
        return np.zeros((h, w), bool)
    otsu, _ = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu on MRI splits dark tissue from bright tissue; half of it still separates tissue from air.
    threshold = float(np.clip(0.5 * otsu, 8, 60))
    fg: np.ndarray = (smooth > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(size / 100), _odd(size / 100)))
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    head = (labels == largest).astype(np.uint8)
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(size / 40), _odd(size / 40)))
    head = cv2.morphologyEx(head, cv2.MORPH_CLOSE, close)
    return fill_holes(head)


#: Default settings of :func:`relevance_region` (documented in the reports).
REGION_QUANTILE = 0.95
REGION_MIN_FRACTION = 0.5
REGION_KEEP_FRACTION = 0.5
REGION_SMOOTH = 0.01


def relevance_region(
    relevance: np.ndarray,
    brain: np.ndarray | None = None,
    quantile: float = REGION_QUANTILE,
    min_fraction: float = REGION_MIN_FRACTION,
    keep_fraction: float = REGION_KEEP_FRACTION,
    smooth: float = REGION_SMOOTH,
) -> np.ndarray:
    """The region a relevance map points at.

    Method: keep the positive relevance; smooth it with a Gaussian of sigma ``smooth`` x the image
    side (pixel-level maps such as LRP are speckled); set it to zero outside ``brain``; threshold at
    the larger of (a) its ``quantile`` over the head pixels and (b) ``min_fraction`` x its maximum;
    label the connected components (8-connectivity); keep the component with the largest summed
    relevance and every component with at least ``keep_fraction`` of that sum; fill holes.

    So the region covers at most ``1 - quantile`` of the head and only pixels with at least
    ``min_fraction`` of the peak relevance.

    Args:
        relevance: ``(H, W)`` map, positive = evidence.
        brain: Optional ``(H, W)`` head mask (see :func:`brain_mask`); the whole image otherwise.
        quantile: Share of head pixels that lie below the threshold.
        min_fraction: Lowest threshold as a fraction of the smoothed map's maximum.
        keep_fraction: Secondary components are kept when their relevance reaches this fraction of the
            strongest one's.
        smooth: Gaussian sigma as a fraction of the larger image side (0 disables smoothing).

    Returns:
        ``(H, W)`` bool mask; all False when the map has no positive relevance inside the head.
    """
    if relevance.ndim != 2:
        raise ValueError(f"relevance must be 2-D, got shape {relevance.shape}")
    if brain is not None and brain.shape != relevance.shape:
        raise ValueError(f"brain mask shape {brain.shape} differs from relevance shape {relevance.shape}")
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {quantile}")
    r: np.ndarray = np.nan_to_num(relevance.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    r = np.maximum(r, 0.0)
    sigma = smooth * max(r.shape)
    if sigma > 0:
        r = cv2.GaussianBlur(r, (0, 0), sigmaX=sigma, sigmaY=sigma)
    inside = np.ones(r.shape, bool) if brain is None else brain.astype(bool)
    r = np.where(inside, r, 0.0)
    peak = float(r.max())
    if peak <= 0.0 or not inside.any():
        return np.zeros(r.shape, bool)
    threshold = max(float(np.quantile(r[inside], quantile)), min_fraction * peak)
    candidate = (r >= threshold) & (r > 0)
    n, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(r.shape, bool)
    mass = np.bincount(labels.ravel(), weights=r.ravel(), minlength=n)[1:]
    keep = np.flatnonzero(mass >= keep_fraction * mass.max()) + 1
    return fill_holes(np.isin(labels, keep))
