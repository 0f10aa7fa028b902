"""Measurements of masks on the pixel grid: area, centroid, diameters, distance to the head's edge, texture.

Pure functions of boolean masks (and the image, for texture) and a :class:`Spacing`. Rows run top to
bottom, columns left to right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Spacing:
    """Pixel spacing as used for measurement: ``row`` and ``col`` sizes and their unit (``mm`` or ``px``)."""

    row: float = 1.0
    col: float = 1.0
    unit: str = "px"

    @classmethod
    def from_mm(cls, spacing_mm: tuple[float, float] | None) -> Spacing:
        """Spacing in mm from ``(row, col)``, or one pixel per unit (``px``) when it is unknown."""
        if spacing_mm is None:
            return cls()
        return cls(float(spacing_mm[0]), float(spacing_mm[1]), "mm")

    @property
    def area_unit(self) -> str:
        return f"{self.unit}²"

    @property
    def volume_unit(self) -> str:
        return f"{self.unit}³"

    @property
    def mean(self) -> float:
        return (self.row + self.col) / 2


def region_area(mask: np.ndarray, spacing: Spacing = Spacing()) -> float:
    """Area of a mask: pixel count times the area of one pixel."""
    return float(np.count_nonzero(mask)) * spacing.row * spacing.col


def region_centroid(mask: np.ndarray) -> tuple[float, float]:
    """``(row, col)`` centroid in pixels."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask has no centroid")
    return float(ys.mean()), float(xs.mean())


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` bounding box of a mask (ends exclusive); the whole image when it is empty."""
    # The bounds stay numpy integers, as they always were: the position ratios built on them are rounded
    # with numpy's rounding, which can differ from Python's in the last digit.
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size and cols.size:
        return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return 0, mask.shape[0], 0, mask.shape[1]


def ellipse_axes(mask: np.ndarray, spacing: Spacing = Spacing()) -> tuple[float, float]:
    """Full major and minor axis lengths of the ellipse with the mask's second moments.

    Moments are taken in physical units; each pixel contributes its own extent (``s²/12``), so a
    rasterised disk of radius ``r`` gives axes close to ``2r``.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 0.0
    pts = np.stack([xs * spacing.col, ys * spacing.row])
    cov = np.cov(pts, bias=True) if ys.size > 1 else np.zeros((2, 2))
    cov = cov + np.diag([spacing.col**2 / 12, spacing.row**2 / 12])
    eig = np.clip(np.linalg.eigvalsh(cov), 0, None)
    return 4 * math.sqrt(eig[1]), 4 * math.sqrt(eig[0])


def ellipsoid_volume(major: float, minor: float, depth: float | None = None) -> float:
    """Volume of an ellipsoid with full axes ``major``, ``minor`` and ``depth`` (default: ``minor``)."""
    depth = minor if depth is None else depth
    return math.pi / 6 * major * minor * depth


def feret_diameters(mask: np.ndarray, spacing: Spacing = Spacing()) -> tuple[float, float]:
    """Maximum Feret diameter of a mask and its width perpendicular to that diameter.

    Computed on the convex hull of the pixel squares' corners, in physical units.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 0.0
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)]).astype(
        np.float32
    )
    hull = cv2.convexHull(corners).reshape(-1, 2).astype(np.float64)
    hull *= np.array([spacing.col, spacing.row])
    diff = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    longest = float(dist[i, j])
    if longest == 0:
        return 0.0, 0.0
    direction = (hull[j] - hull[i]) / longest
    normal = np.array([-direction[1], direction[0]])
    proj = hull @ normal
    return longest, float(proj.max() - proj.min())


def glcm_contrast(image: np.ndarray, mask: np.ndarray, levels: int = 16) -> float | None:
    """GLCM contrast inside a mask: 16 grey levels, distance 1, four directions, symmetric.

    Returns None when the mask holds no neighbouring pixel pairs.
    """
    q = (image.astype(np.int64) * levels) // 256
    h, w = q.shape
    glcm = np.zeros((levels, levels), dtype=np.float64)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), w - max(0, dx)
        a_mask = mask[y0:y1, x0:x1] & mask[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        a = q[y0:y1, x0:x1][a_mask]
        b = q[y0 + dy : y1 + dy, x0 + dx : x1 + dx][a_mask]
        np.add.at(glcm, (a, b), 1)
        np.add.at(glcm, (b, a), 1)
    total = glcm.sum()
    if total == 0:
        return None
    i, j = np.indices(glcm.shape)
    return float((glcm / total * (i - j) ** 2).sum())


def surface_distance(region: np.ndarray, brain: np.ndarray, spacing: Spacing = Spacing()) -> float:
    """Smallest distance from the region to the outside of the brain mask (0 when they touch)."""
    inside = region & brain
    if not inside.any() or (region & ~brain).any():
        return 0.0
    # Pad so the image border counts as outside the brain.
    padded = np.pad(brain.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    # distanceTransform measures to the centre of the nearest outside pixel; the edge is half a pixel nearer.
    return max(float(dist[inside].min()) - 0.5, 0.0) * spacing.mean
