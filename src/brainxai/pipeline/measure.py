"""The measure step: the relevance region, the agreement of two methods and the ten spatial parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from brainxai.pipeline.options import AnalysisOptions
from brainxai.pipeline.steps import PreparedImage, map_back
from brainxai.reporting.labels import method_title
from brainxai.util.stats import spearman

if TYPE_CHECKING:
    from brainxai.io import ScanImage

#: What the parameters say about agreement when it was not measured.
NO_AGREEMENT = "not computed (no tumour region or switched off)"


@dataclass(frozen=True)
class Regions:
    """Where the explanation points, on the scan's own pixel grid.

    Attributes:
        relevance: The relevance map placed back on the scan.
        brain: Mask of the brain (head) pixels.
        region: Mask of the relevance region inside the brain.
    """

    relevance: np.ndarray
    brain: np.ndarray
    region: np.ndarray


@dataclass(frozen=True)
class Spacing:
    """The pixel spacing the sizes are measured with (None: sizes in pixels) and whether it was assumed."""

    mm: tuple[float, float] | None
    assumed: bool


def locate(relevance: np.ndarray, prepared: PreparedImage) -> Regions:
    """Maps a model-input relevance map back onto the scan and derives the brain mask and relevance region."""
    from brainxai.analysis.region import brain_mask, relevance_region

    on_scan = map_back(relevance, prepared)
    brain = brain_mask(prepared.original)
    return Regions(on_scan, brain, relevance_region(on_scan, brain=brain))


def agreement(
    method: str,
    second: str,
    relevance: np.ndarray,
    second_relevance: np.ndarray,
    prepared: PreparedImage,
    regions: Regions,
) -> dict[str, Any]:
    """How far a second explanation method agrees with the first: IoU of the regions, Spearman of the maps."""
    from brainxai.analysis.region import relevance_region

    second_region = relevance_region(map_back(second_relevance, prepared), brain=regions.brain)
    return {
        "second_method": second,
        "iou": _iou(regions.region, second_region),
        "spearman": spearman(relevance, second_relevance),
        "description": (
            f"IoU of the relevance regions of {method_title(method)} and {method_title(second)} "
            "(Spearman rank correlation of the two maps in the JSON)"
        ),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b)) / float(union) if union else None


def pixel_spacing(scan: ScanImage, options: AnalysisOptions, notes: list[str]) -> Spacing:
    """The file's spacing, else the one the user assumed; a note says which (or that sizes are in pixels)."""
    if scan.pixel_spacing_mm is not None:
        return Spacing(scan.pixel_spacing_mm, False)
    assumed = options.assumed_spacing()
    if assumed is None:
        notes.append("The file records no pixel spacing, so sizes are in pixels, not millimetres.")
        return Spacing(None, False)
    notes.append(f"Pixel spacing {assumed[0]:g} x {assumed[1]:g} mm was assumed by the user, not read from the file.")
    return Spacing(assumed, True)


def sequence(scan: ScanImage, options: AnalysisOptions) -> str | None:
    """The MR sequence: the one the user stated, else the file's."""
    return options.sequence or scan.meta.get("sequence")


def spatial_parameters(
    scan: ScanImage,
    regions: Regions,
    prediction: str,
    confidence: float,
    agreement_info: dict[str, Any] | None,
    spacing: Spacing,
    options: AnalysisOptions,
) -> list[dict[str, Any]]:
    """The ten spatial parameters of the relevance region, as dicts for the result."""
    from brainxai.analysis.spatial import compute_spatial_parameters

    params = compute_spatial_parameters(
        scan.pixels,
        regions.region,
        regions.brain,
        spacing.mm,
        confidence,
        agreement_info["iou"] if agreement_info else None,
        prediction=prediction,
        agreement_method=agreement_info["description"] if agreement_info else NO_AGREEMENT,
        spacing_assumed=spacing.assumed,
        plane=scan.meta.get("plane"),
        display_convention=scan.meta.get("display_convention"),
        sequence=sequence(scan, options),
        perfusion=options.perfusion_map,
    )
    return [p.to_dict() for p in params]


#: Shown in place of every spatial parameter of an out-of-domain image.
OUT_OF_DOMAIN_TEXT = "not assessed (image outside what the model was trained on)"


def withhold_out_of_domain(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parameters with every value withheld: an out-of-domain image has no finding to measure.

    The region comes from an explanation of a prediction that is not assessable, so its figures would
    describe nothing; each parameter keeps its name and method note, with status ``not_assessable``.
    """
    return [
        p
        | {
            "value": OUT_OF_DOMAIN_TEXT,
            "unit": "",
            "status": "not_assessable",
            "text": OUT_OF_DOMAIN_TEXT,
            "details": {},
        }
        for p in params
    ]
