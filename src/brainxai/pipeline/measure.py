"""The measure step: the relevance region, the agreement of two methods and the ten spatial parameters.

The parameters that describe the lesion are measured on the segmented tumour when a segmentation model
outlined one for a tumour prediction, else on the relevance region; each says which in its ``source``.
"""

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
    tumour: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The ten spatial parameters, as dicts for the result, each with the ``source`` it was measured on.

    The lesion-describing parameters are measured on ``tumour`` (the segmented tumour) when given, else on
    the relevance region; see :func:`with_sources`.
    """
    from brainxai.analysis.spatial import compute_spatial_parameters

    params = compute_spatial_parameters(
        scan.pixels,
        tumour if tumour is not None else regions.region,
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
    return with_sources([p.to_dict() for p in params], tumour)


#: Opens the method note of a parameter measured on the segmented tumour.
SEGMENTED_REGION_NOTE = "Region = the segmented tumour (see the segmentation). "

#: Parameters that do not describe the lesion, and what they are computed from instead.
_OTHER_SOURCES = {"midline_shift": "slice", "confidence": "classifier"}
#: Statuses of parameters that were not measured (no source to name).
_NOT_MEASURED = ("not_applicable", "not_assessable")


def with_sources(params: list[dict[str, Any]], tumour: np.ndarray | None) -> list[dict[str, Any]]:
    """Adds ``source`` to each parameter: ``segmentation`` or ``relevance`` for the lesion-describing ones.

    The midline shift is a property of the slice (``slice``; the lesion is left out of its symmetry search)
    and the confidence the classifier's (``classifier``). On the segmentation, the method note says so first.
    A parameter not measured at all (``not_applicable``, e.g. no tumour; ``not_assessable``, e.g. no perfusion
    map) has source None.
    """
    region_source = "segmentation" if tumour is not None else "relevance"
    out = []
    for p in params:
        measured = p.get("status") not in _NOT_MEASURED
        source = _OTHER_SOURCES.get(p["key"], region_source) if measured else None
        method = p["method"]
        if tumour is not None and source == "segmentation":
            # Short on purpose: the model and its threshold are in the result's segmentation block, and a
            # long note on eight rows lengthens the PDF's table layout measurably.
            method = SEGMENTED_REGION_NOTE + method
        elif tumour is not None and p["key"] == "midline_shift":
            method += " The segmented tumour is the region left out."
        out.append(p | {"method": method, "source": source})
    return out


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
            "source": None,  # nothing was measured
        }
        for p in params
    ]
