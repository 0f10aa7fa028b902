"""The relevance region as a binary DICOM Segmentation: the fallback when a Parametric Map does not fit.

The region is where the explanation's relevance is highest inside the brain (what the report outlines
and measures). It is **not** a tumour delineation; the segment's label and description say so. When a
segmentation model outlined the tumour, that outline is a second segment (the two may overlap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydicom.sr.codedict import codes as std

from brainxai.reporting.dicom import codes
from brainxai.reporting.dicom import source as src
from brainxai.reporting.dicom.common import algorithm_parameters, equipment_kwargs
from brainxai.reporting.dicom.parametric_map import finish_derived
from brainxai.reporting.dicom.source import DicomSource
from brainxai.reporting.labels import method_title

SEG_SERIES = 9902


def relevance_segmentation(
    region: np.ndarray, source: DicomSource, result: Mapping[str, Any], tumour: np.ndarray | None = None
) -> Any:
    """The relevance region (boolean mask on the source's grid) as a binary Segmentation; ``tumour``, the
    segmentation model's outline, as a second segment when given and not empty."""
    import highdicom as hd

    mask = np.asarray(region, dtype=bool)
    rows, cols = int(source.image.Rows), int(source.image.Columns)
    if mask.shape != (rows, cols):
        raise ValueError(f"region mask {mask.shape} does not match the source image ({rows}, {cols})")
    model = result.get("model") or {}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"brainxai {model.get('name', '')}".strip()[:64],
        family=std.cid7162.ArtificialIntelligence,
        version=str(result.get("brainxai_version") or "")[:64] or "unknown",
        parameters=algorithm_parameters(result),
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="relevance region (not a tumour outline)",
        segmented_property_category=std.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.RELEVANCE_REGION,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=source.uid("tracking"),
        tracking_id="brainxai relevance region",
    )
    segments, planes = [segment], [mask]
    if tumour is not None and np.any(tumour):
        segments.append(tumour_segment(source, result))
        planes.append(np.asarray(tumour, dtype=bool))
    return binary_segmentation(
        [source.image],
        np.stack(planes, axis=-1)[None].astype(np.uint8),
        segments,
        source,
        result,
        key="seg",
        label="RELEVANCE",
        description=f"{method_title(str(result.get('method', '?')))} relevance region",
        series_kind="relevance region",
        omit_empty_frames=False,
    )


def binary_segmentation(
    source_images: list[Any],
    pixel_array: np.ndarray,
    segments: list[Any],
    context: DicomSource,
    result: Mapping[str, Any],
    *,
    key: str,
    label: str,
    description: str,
    series_kind: str,
    omit_empty_frames: bool,
) -> Any:
    """A binary highdicom Segmentation of ours: deterministic UIDs from ``context`` (``key``, ``key-series``),
    our series number, equipment and coding scheme, finished by :func:`finish_segmentation`."""
    import highdicom as hd

    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=context.uid(f"{key}-series"),
        series_number=SEG_SERIES,
        sop_instance_uid=context.uid(key),
        instance_number=1,
        omit_empty_frames=omit_empty_frames,
        content_label=label,
        content_description=description[:64],
        contributing_equipment=[src.model_equipment(result)],
        series_description=src.series_description(series_kind),
        coding_schemes=[codes.coding_scheme()],
        **equipment_kwargs(result),
    )
    finish_segmentation(seg, context)
    return seg


def finish_segmentation(seg: Any, source: DicomSource) -> None:
    """What every Segmentation of ours needs after highdicom: the analysed frame, a Patient Orientation."""
    finish_derived(seg, source)
    if "PatientOrientation" not in seg and "ImageOrientationPatient" not in source.image:
        seg.PatientOrientation = source.image.get("PatientOrientation", "")  # Type 2C without a patient geometry


def tumour_segment(
    source: DicomSource, result: Mapping[str, Any], *, number: int = 2, model: Mapping[str, Any] | None = None
) -> Any:
    """The segment of the tumour as outlined by the segmentation model.

    Args:
        source: The object context (its UIDs seed the segment's tracking UID).
        result: The analysis result (brainxai version; the model from ``result["segmentation"]["model"]``).
        number: The segment number (2 beside the relevance region; 1 in a series' tumour Segmentation).
        model: The segmentation model's record, when not in ``result["segmentation"]``.
    """
    import highdicom as hd

    model = model if model is not None else (result.get("segmentation") or {}).get("model") or {}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"brainxai {model.get('name', 'segmentation')}"[:64],
        family=std.cid7162.ArtificialIntelligence,
        version=str(model.get("version") or result.get("brainxai_version") or "unknown")[:64],
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label="tumour (automatic segmentation)",
        segmented_property_category=std.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=std.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=source.uid("tracking-tumour"),
        tracking_id="brainxai segmented tumour",
    )
