"""Composes the ten spatial parameters of a finding on one slice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainxai.analysis.spatial.geometry import Spacing, mask_bounds, region_centroid
from brainxai.analysis.spatial.midline import MidlineEstimate, estimate_midline
from brainxai.analysis.spatial.parameters import (
    anatomical_region,
    area_volume,
    confidence,
    hemisphere,
    maximum_dimensions,
    midline_shift,
    peritumoral_oedema,
    rcbv,
    region_not_measured,
    spacing_note,
    spatial_relation,
    texture,
)
from brainxai.analysis.spatial.schema import PARAMETER_KEYS, SpatialParameter
from brainxai.constants import NO_TUMOUR

#: Parameters that do not need a region (the rest are measured on it).
_SLICE_KEYS = ("midline_shift", "confidence", "rcbv")


@dataclass(frozen=True)
class _Slice:
    """What the region-based parameters are measured from."""

    image: np.ndarray
    region: np.ndarray
    brain: np.ndarray
    spacing: Spacing
    spacing_note: str
    plane: str | None
    midline: MidlineEstimate | None


def _slice(
    image: np.ndarray,
    region: np.ndarray,
    brain: np.ndarray,
    spacing_mm: tuple[float, float] | None,
    spacing_assumed: bool,
    plane: str | None,
) -> _Slice:
    """Checks the grids, makes the masks boolean and estimates the midline (axial or unknown plane only)."""
    if image.shape != region.shape or image.shape != brain.shape:
        raise ValueError(f"image {image.shape}, region {region.shape} and brain {brain.shape} must match")
    region = region.astype(bool)
    brain = brain.astype(bool)
    sp = Spacing.from_mm(spacing_mm)
    midline = (
        estimate_midline(image, brain, exclude=region if region.any() else None, spacing=sp)
        if plane in (None, "axial")
        else None
    )
    return _Slice(image, region, brain, sp, spacing_note(sp, spacing_assumed), plane, midline)


def _position(s: _Slice) -> tuple[float, float, float, str]:
    """``(u, v, midline column, its source)``: the region centroid's place in the brain.

    ``u`` is left-right from the midline in half brain widths, ``v`` top to bottom in brain heights.
    """
    cy, cx = region_centroid(s.region)
    r0, r1, c0, c1 = mask_bounds(s.brain)
    mid_x = s.midline.column_at(cy) if s.midline is not None else (c0 + c1) / 2
    mid_source = "the estimated midline" if s.midline is not None else "the centre of the brain mask's width"
    half_w = max((c1 - c0) / 2, 1.0)
    return (cx - mid_x) / half_w, (cy - r0) / max(r1 - r0, 1), mid_x, mid_source


def _region_parameters(
    s: _Slice, prediction: str | None, convention: str | None, sequence: str | None
) -> dict[str, SpatialParameter]:
    """The seven parameters measured on the region (not applicable / not assessable without one)."""
    no_tumour = prediction == NO_TUMOUR
    if no_tumour or not s.region.any():
        return {k: region_not_measured(k, no_tumour) for k in PARAMETER_KEYS if k not in _SLICE_KEYS}
    u, v, mid_x, mid_source = _position(s)
    return {
        "anatomical_region": anatomical_region(u, v, s.plane, prediction),
        "hemisphere": hemisphere(s.region, mid_x, mid_source, s.plane, convention),
        "spatial_relation": spatial_relation(s.region, s.brain, s.spacing),
        "area_volume": area_volume(s.region, s.spacing, s.spacing_note),
        "maximum_dimensions": maximum_dimensions(s.region, s.spacing, s.spacing_note),
        "texture": texture(s.image, s.region),
        "peritumoral_oedema": peritumoral_oedema(s.image, s.region, s.brain, s.spacing, sequence, s.spacing_note),
    }


def compute_spatial_parameters(
    image: np.ndarray,
    region: np.ndarray,
    brain: np.ndarray,
    pixel_spacing_mm: tuple[float, float] | None,
    probability: float,
    agreement: float | None,
    *,
    prediction: str | None = None,
    agreement_method: str = "IoU of the relevance regions of two explanation methods",
    spacing_assumed: bool = False,
    plane: str | None = None,
    display_convention: str | None = None,
    sequence: str | None = None,
    perfusion: np.ndarray | None = None,
) -> list[SpatialParameter]:
    """Computes the ten spatial parameters of a finding on one slice, in :data:`PARAMETER_KEYS` order.

    Args:
        image: ``(H, W)`` ``uint8`` display image.
        region: ``(H, W)`` bool mask of the explanation's region (same grid as ``image``).
        brain: ``(H, W)`` bool brain mask.
        pixel_spacing_mm: ``(row, col)`` spacing, or None (measurements are then in pixels).
        probability: The model's probability for its predicted class.
        agreement: Agreement between two explanation methods in [0, 1] (None if not computed).
        prediction: Predicted class; for ``notumor`` the region-based parameters are not applicable.
        agreement_method: How ``agreement`` was computed (goes into the method note).
        spacing_assumed: ``pixel_spacing_mm`` was assumed by the user, not read from the file.
        plane: ``axial``, ``coronal``, ``sagittal``, ``oblique`` or None (unknown; axial assumed).
        display_convention: ``radiological``, ``neurological`` or None (unknown).
        sequence: MR sequence if known (``T1``, ``T2``, ``FLAIR``...); oedema needs T2 or FLAIR.
        perfusion: Optional CBV map on the same grid; enables the rCBV ratio.
    """
    s = _slice(image, region, brain, pixel_spacing_mm, spacing_assumed, plane)
    params = {
        "midline_shift": midline_shift(s.midline, s.spacing, plane, s.spacing_note),
        "confidence": confidence(probability, agreement, agreement_method),
        "rcbv": rcbv(perfusion, s.region, s.brain, s.midline, prediction),
    }
    params.update(_region_parameters(s, prediction, display_convention, sequence))
    return [params[k] for k in PARAMETER_KEYS]
