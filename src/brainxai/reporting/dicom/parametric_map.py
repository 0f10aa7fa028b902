"""The explanation heatmap as a DICOM Parametric Map: float relevance on the analysed slice's pixel grid.

The stored values are the relevance map exactly as the pipeline placed it on the scan (32-bit float,
no rescaling); the Real World Value Mapping is the identity, its quantity "Saliency" (DCM 130404) and
its unit "no units": relevance is relative, not a physical quantity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from brainxai.reporting.dicom import source as src
from brainxai.reporting.dicom.codes import NO_UNITS, SALIENCY
from brainxai.reporting.dicom.common import equipment_kwargs
from brainxai.reporting.dicom.source import DicomSource
from brainxai.reporting.labels import method_title

PM_SERIES = 9901


def parametric_map(
    relevance: np.ndarray,
    source: DicomSource,
    result: Mapping[str, Any],
    source_images: Sequence[Any] | None = None,
) -> Any:
    """The relevance map as a Parametric Map in the source's study, derived from the source image.

    For a series, ``relevance`` is ``(frames, rows, columns)`` and ``source_images`` the instances it
    derives from: one per frame (single-frame sources, in the same order) or one multi-frame image with
    as many frames; highdicom takes each frame's position from them.

    Raises:
        ValueError: The map does not match the source image's rows and columns.
    """
    import highdicom as hd

    values = np.asarray(relevance, dtype=np.float32)
    rows, cols = int(source.image.Rows), int(source.image.Columns)
    if values.shape[-2:] != (rows, cols) or (values.ndim != 2 and source_images is None):
        raise ValueError(f"relevance map {values.shape} does not match the source image ({rows}, {cols})")
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    method = method_title(str(result.get("method", "?")))
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="relevance",
        lut_explanation=f"{method} relevance (relative, not a tissue value)"[:64],
        unit=NO_UNITS,
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
        quantity_definition=SALIENCY,
    )
    kwargs: dict[str, Any] = {}
    if source.frame is not None and source_images is None:
        kwargs["plane_positions"] = _frame_position(source)
    pm = hd.pm.ParametricMap(
        source_images=list(source_images) if source_images is not None else [source.image],
        pixel_array=values,
        series_instance_uid=source.uid("pm-series"),
        series_number=PM_SERIES,
        sop_instance_uid=source.uid("pm"),
        instance_number=1,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # LINEAR_EXACT: the window of a float map may be narrower than 1 (PS3.3 C.11.2.1.3.2).
        voi_lut_transformations=[
            hd.VOILUTTransformation(window_center=(lo + hi) / 2, window_width=hi - lo, voi_lut_function="LINEAR_EXACT")
        ],
        content_label="RELEVANCE",
        content_description=f"{method} relevance for the predicted class: {result.get('prediction')}"[:64],
        contributing_equipment=[src.model_equipment(result)],
        series_description=src.series_description(f"{method} relevance map"),
        **equipment_kwargs(result),
        **kwargs,
    )
    finish_derived(pm, source)
    for measures in pm.SharedFunctionalGroupsSequence[0].get("PixelMeasuresSequence", []):
        if "SliceThickness" in measures and measures.SliceThickness in (None, ""):
            del measures.SliceThickness  # Type 1C: absent, not empty, when the source does not know it
    if "Laterality" not in pm:
        pm.Laterality = ""  # Type 2C (dciodvfy wants it present); the brain is not a paired structure
    return pm


def has_patient_geometry(image: Any) -> bool:
    """Whether an image places its pixels in the patient (what a Parametric Map's frame needs)."""
    if "PerFrameFunctionalGroupsSequence" in image or "SharedFunctionalGroupsSequence" in image:
        return "FrameOfReferenceUID" in image
    keywords = ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    return all(image.get(k) not in (None, "") for k in keywords)


def finish_derived(ds: Any, source: DicomSource) -> None:
    """Attributes our derived images share: the analysed frame of a multi-frame source."""
    if source.frame is None:
        return
    for group in ds.get("PerFrameFunctionalGroupsSequence", []):
        for item in group.get("DerivationImageSequence", []):
            for ref in item.get("SourceImageSequence", []):
                if ref.ReferencedSOPInstanceUID == source.image.SOPInstanceUID:
                    ref.ReferencedFrameNumber = source.frame


def _frame_position(source: DicomSource) -> list[Any]:
    """The plane position of the analysed frame of a multi-frame source (empty list when it has none)."""
    import highdicom as hd

    per_frame = source.image.get("PerFrameFunctionalGroupsSequence")
    frame = source.frame or 1
    if per_frame is not None and len(per_frame) >= frame and "PlanePositionSequence" in per_frame[frame - 1]:
        position = per_frame[frame - 1].PlanePositionSequence[0].ImagePositionPatient
        return [hd.PlanePositionSequence("PATIENT", [float(v) for v in position])]
    return []
