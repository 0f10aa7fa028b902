"""The segmented tumour as a lesion: its size, the share of an explanation inside it, and whether two models agree.

A segmentation model outlines the tumour (a boolean mask on the scan's pixel grid); the classifier says
whether there is one. This module measures the mask and compares the two, with plain documented rules:

- :func:`measure_lesion`: area (pixels, mm² when the spacing is known, and pixels on the classifier's
  input grid, which makes sizes comparable across image resolutions) and the maximum Feret diameter
  with the width perpendicular to it.
- :func:`relevance_in_tumour`: the share of the explanation's positive relevance mass inside the mask.
- :func:`disagreement`: the warning when the classifier says "no tumour" while the segmentation holds a
  sizeable lesion (at least :data:`MIN_LESION_AREA_MODEL_PX`), or says "tumour" while it is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from brainxai.analysis.spatial.geometry import Spacing, feret_diameters

#: A lesion this large (pixels on the classifier's 224 x 224 input grid) counts as sizeable: an ~11 px disc
#: there, about 1 cm across on a typical axial slice. Of the 1,698 expert-outlined tumours of the figshare
#: development set, 4 (0.24%) are smaller on that grid (5th percentile: glioma 390, meningioma 357,
#: pituitary 157 px²).
MIN_LESION_AREA_MODEL_PX = 100.0


@dataclass(frozen=True)
class Lesion:
    """Size of a segmented tumour on one slice.

    Attributes:
        mask: ``(H, W)`` bool mask on the scan's pixel grid.
        area_px: Pixel count (= area in px² of the scan).
        area_model_px: The same area on the classifier's input grid (px²).
        area_mm2: Area in mm² (None when the pixel spacing is unknown).
        max_diameter: Maximum Feret diameter, in ``unit``.
        perpendicular_diameter: Width perpendicular to it, in ``unit``.
        unit: ``mm`` or ``px``.
    """

    mask: np.ndarray
    area_px: int
    area_model_px: float
    area_mm2: float | None
    max_diameter: float
    perpendicular_diameter: float
    unit: str

    @property
    def empty(self) -> bool:
        """Whether the segmentation holds no pixel."""
        return self.area_px == 0

    @property
    def sizeable(self) -> bool:
        """At least :data:`MIN_LESION_AREA_MODEL_PX` on the classifier's input grid."""
        return self.area_model_px >= MIN_LESION_AREA_MODEL_PX

    def to_dict(self) -> dict[str, Any]:
        """The figures for the JSON (rounded; the mask is left out)."""
        return {
            "area_px": self.area_px,
            "area_mm2": None if self.area_mm2 is None else round(self.area_mm2, 2),
            "area_model_grid_px": round(self.area_model_px, 1),
            "max_diameter": round(self.max_diameter, 2),
            "perpendicular_diameter": round(self.perpendicular_diameter, 2),
            "diameter_unit": self.unit,
        }


def measure_lesion(mask: np.ndarray, spacing_mm: tuple[float, float] | None, model_scale: float) -> Lesion:
    """Area and maximum diameters of a segmented tumour.

    Args:
        mask: ``(H, W)`` mask on the scan's pixel grid.
        spacing_mm: ``(row, col)`` pixel spacing in mm, or None (sizes then in pixels).
        model_scale: Area of one scan pixel on the classifier's input grid (``(S / crop width) x (S / crop height)``).
    """
    mask = np.asarray(mask, dtype=bool)
    sp = Spacing.from_mm(spacing_mm)
    area_px = int(np.count_nonzero(mask))
    longest, across = feret_diameters(mask, sp)
    area_mm2 = area_px * sp.row * sp.col if sp.unit == "mm" else None
    return Lesion(mask, area_px, area_px * float(model_scale), area_mm2, longest, across, sp.unit)


def relevance_in_tumour(relevance: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the positive relevance mass that lies inside the mask: ``sum(max(R, 0) inside) / sum(max(R, 0))``.

    Returns None when the map has no positive relevance or the mask is empty.
    """
    if relevance.shape != mask.shape:
        raise ValueError(f"relevance {relevance.shape} and mask {mask.shape} must be on the same grid")
    positive = np.maximum(np.nan_to_num(relevance.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    total = float(positive.sum())
    if total <= 0.0 or not mask.any():
        return None
    return float(positive[mask.astype(bool)].sum()) / total


def disagreement_rule() -> str:
    """The rule of :func:`disagreement`, in words, for reports."""
    return (
        "The classifier and the segmentation model disagree when the classifier finds no tumour but the "
        f"segmentation holds at least {MIN_LESION_AREA_MODEL_PX:g} px² on the classifier's input grid, or when "
        "the classifier finds a tumour but the segmentation is empty."
    )


def disagreement(tumour_predicted: bool, lesion: Lesion) -> str | None:
    """The warning when the classifier and the segmentation disagree (see :func:`disagreement_rule`), else None."""
    if not tumour_predicted and lesion.sizeable:
        size = f"{lesion.area_mm2:,.0f} mm²" if lesion.area_mm2 is not None else f"{lesion.area_px:,} px²"
        return (
            "The two models disagree: the classifier found no tumour, but the segmentation model outlines a "
            f"lesion of {size} ({lesion.area_model_px:,.0f} px² on the classifier's input grid, threshold "
            f"{MIN_LESION_AREA_MODEL_PX:g}). Review the image."
        )
    if tumour_predicted and lesion.empty:
        return (
            "The two models disagree: the classifier found a tumour pattern, but the segmentation model outlines "
            "no tumour. The spatial parameters describe the explanation's relevance region instead. Review the image."
        )
    return None
