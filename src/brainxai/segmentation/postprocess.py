"""The tumour mask made from a segmenter's probability map: threshold, then the checkpoint's post-processing.

:func:`probability_mask` is the one place a mask is made from a probability map (single slices, series,
``evaluate-seg``). A checkpoint JSON may carry a ``postprocess`` object, e.g. ``{"method": "hysteresis",
"low": 0.5, "largest_component": true, "fill_holes": true}``; without it the mask is the plain threshold,
so older checkpoints behave exactly as before.

- ``hysteresis``: pixels at or above the threshold are seeds; every 8-connected region of pixels at or
  above ``low`` that contains a seed is kept whole (the tumour's fainter rim joins its confident core,
  faint blobs without a confident pixel stay out).
- ``largest_component``: only the largest 8-connected component is kept (ties: the first in raster order).
- ``fill_holes``: background enclosed by the mask (4-connected, :func:`scipy.ndimage.binary_fill_holes`)
  becomes tumour.

The work is done inside the bounding box of the candidate pixels (plus one pixel), which gives the same
mask as on the whole slice at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("threshold", "hysteresis")
#: 8-connectivity of the tumour's components.
EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class PostProcess:
    """How a thresholded probability map becomes the tumour mask (the checkpoint's ``postprocess`` object).

    Attributes:
        method: ``"threshold"`` (plain) or ``"hysteresis"``.
        low: Hysteresis' lower probability (required for it, at most the threshold).
        largest_component: Keep only the largest 8-connected component.
        fill_holes: Fill background enclosed by the mask.
    """

    method: str = "threshold"
    low: float | None = None
    largest_component: bool = False
    fill_holes: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"postprocess method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.method == "hysteresis" and (self.low is None or not 0.0 < float(self.low) <= 1.0):
            raise ValueError(f"postprocess hysteresis needs a low threshold in (0, 1], got {self.low!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PostProcess | None:
        """The object of a checkpoint JSON's ``postprocess`` entry; None (absent): the plain threshold.

        Raises:
            ValueError: Unknown keys, an unknown method, or hysteresis without a valid ``low``.
        """
        if data is None:
            return None
        unknown = set(data) - {"method", "low", "largest_component", "fill_holes", "selection"}
        if unknown:
            raise ValueError(f"postprocess: unknown key(s) {sorted(unknown)}")
        low = data.get("low")
        return cls(
            method=str(data.get("method", "threshold")),
            low=None if low is None else float(low),
            largest_component=bool(data.get("largest_component", False)),
            fill_holes=bool(data.get("fill_holes", False)),
        )

    @property
    def plain(self) -> bool:
        """Whether this is the plain threshold (nothing to do after it)."""
        return self.method == "threshold" and not self.largest_component and not self.fill_holes

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``low`` only for hysteresis)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "hysteresis":
            out["low"] = self.low
        return {**out, "largest_component": self.largest_component, "fill_holes": self.fill_holes}

    def steps(self) -> list[str]:
        """The steps after the threshold in words, e.g. ``["hysteresis down to 0.5", "largest component"]``."""
        parts = [f"hysteresis down to {self.low:g}"] if self.method == "hysteresis" else []
        if self.largest_component:
            parts.append("largest component")
        if self.fill_holes:
            parts.append("holes filled")
        return parts

    def describe(self) -> str:
        """One line for method notes, e.g. ``hysteresis down to 0.5, largest component, holes filled``."""
        return ", ".join(self.steps() if self.method == "hysteresis" else ["plain threshold", *self.steps()])


def mask_rule(threshold: float, post: PostProcess | None) -> str:
    """The whole mask rule in words for reports, e.g. ``tumour probability ≥ 0.5, holes filled``."""
    return ", ".join([f"tumour probability ≥ {threshold:g}", *(post.steps() if post is not None else [])])


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask, one pixel wider on each side where the slice allows."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)), slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w))


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=EIGHT)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def probability_mask(prob: np.ndarray, threshold: float, post: PostProcess | None = None) -> np.ndarray:
    """The tumour mask, bool ``(H, W)``, of a probability map: ``prob >= threshold``, then ``post``.

    Args:
        prob: Tumour probability ``(H, W)``.
        threshold: The mask's (seed) threshold.
        post: The checkpoint's post-processing; None or plain: the thresholded map as it is.
    """
    prob = np.asarray(prob)
    seeds = prob >= threshold
    if post is None or post.plain or not seeds.any():
        return seeds
    from scipy import ndimage

    low = threshold if post.low is None or post.method != "hysteresis" else min(post.low, threshold)
    candidates = prob >= low if low < threshold else seeds
    rows, cols = _box(candidates)
    mask = candidates[rows, cols]
    if post.method == "hysteresis":
        labels, _ = ndimage.label(mask, structure=EIGHT)
        keep = np.unique(labels[seeds[rows, cols]])
        mask = np.isin(labels, keep[keep > 0])
    if post.largest_component:
        mask = _largest(mask)
    if post.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    out = np.zeros(prob.shape, dtype=bool)
    out[rows, cols] = mask
    return out


__all__ = ["PostProcess", "probability_mask"]
