"""The analysis as a Comprehensive SR measurement report (TID 1500), built with highdicom.

Content: one Measurements and Qualitative Evaluations group (TID 1501) for the analysed image with

- the finding (the predicted class, coded in brainxai's private scheme; "not assessable" when the
  image lies outside the model's training domain) and the algorithm
  (TID 4019: model, brainxai version, explanation method, checkpoint SHA-256);
- each class's probability (unit "no units");
- the sizes of the relevance region as numbers with UCUM units: ``mm``, ``mm2``, ``mm3`` only when
  the pixel spacing was read from the file; ``{pixels}`` when the file records none (the estimated
  volume is then left out: a volume in pixel units says nothing). When the user *assumed* a spacing,
  sizes are not coded as numbers at all: the text items carry them, marked as computed with an
  assumed spacing;
- with a segmented tumour (the result's ``segmentation``): its area, maximum and perpendicular
  diameters (same unit rule as the sizes: ``mm2``/``mm``, ``{pixels}``, or text only when assumed) and
  the share of the explanation's positive relevance inside it (``{ratio}``), under concepts that name
  them as the segmentation model's estimate, and a text item naming the model and the method;
- every spatial parameter as text (its value as written for people) with its method note;
- comments: the research-use statement, what the input was (a new study for non-DICOM input), and
  the analysis's warnings and notes.

The device observer context and Contributing Equipment name the model; VerificationFlag is
UNVERIFIED and PreliminaryFlag PRELIMINARY: nobody has reviewed these results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as std
from pydicom.sr.coding import Code

from brainxai.constants import DISCLAIMER
from brainxai.reporting.dicom import codes
from brainxai.reporting.dicom import source as src
from brainxai.reporting.dicom.common import algorithm_parameters
from brainxai.reporting.dicom.source import DicomSource
from brainxai.reporting.labels import mask_rule_text

SR_SERIES = 9905
#: Size parameters: written as numbers only with a spacing read from the file, or in pixels.
SIZE_KEYS = ("area_volume", "maximum_dimensions", "spatial_relation", "midline_shift", "peritumoral_oedema")


def spacing_source(result: Mapping[str, Any]) -> str:
    """``"file"`` (spacing read from the scan), ``"assumed"`` (given by the user) or ``"none"``."""
    scan = result.get("scan") or {}
    if scan.get("assumed_pixel_spacing_mm"):
        return "assumed"
    return "file" if scan.get("pixel_spacing_mm") else "none"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _size_values(param: Mapping[str, Any]) -> list[tuple[Code, Any, str]]:
    """``(concept, value, dimension)`` of the numbers in one size parameter; dimension 1, 2 or 3 as ``"L"``..."""
    key, value, details = param["key"], param.get("value"), param.get("details") or {}
    if key == "area_volume" and isinstance(value, dict):
        return [(codes.AREA, value.get("area"), "L2"), (codes.ESTIMATED_VOLUME, value.get("estimated_volume"), "L3")]
    if key == "maximum_dimensions" and isinstance(value, dict):
        return [
            (codes.LONG_AXIS, value.get("max_diameter"), "L"),
            (codes.SHORT_AXIS, value.get("perpendicular_diameter"), "L"),
        ]
    if key == "spatial_relation":
        return [(codes.DISTANCE_TO_HEAD_EDGE, details.get("distance_to_head_edge"), "L")]
    if key == "midline_shift":
        return [(codes.MIDLINE_SHIFT, value, "L")]
    if key == "peritumoral_oedema":
        return [(codes.OEDEMA_AREA, value, "L2")]
    return []


def _unit(dimension: str, spacing: str) -> Code | None:
    """The UCUM unit of a size, or None when it must not be coded as a number."""
    if spacing == "file":
        return {"L": codes.MM, "L2": codes.MM2, "L3": codes.MM3}[dimension]
    if spacing == "none" and dimension in ("L", "L2"):
        return codes.PIXELS  # a length in pixel widths, an area as a pixel count
    return None


def measurements(
    result: Mapping[str, Any], source: DicomSource, series_images: Sequence[Dataset] | None = None
) -> list[Any]:
    """The coded numbers: class probabilities, sizes (see :func:`spacing_source`), texture and rCBV.

    With ``series_images`` (a series analysis: the key slices its probabilities are the mean over), the
    probabilities refer to those instances; the sizes still refer to the measured image, ``source``.
    """
    import highdicom as hd

    refs = [hd.sr.SourceImageForMeasurement.from_source_image(source.image, _frames(source))]
    prob_refs = [hd.sr.SourceImageForMeasurement.from_source_image(i) for i in series_images] if series_images else refs
    out = [
        hd.sr.Measurement(codes.class_probability_code(c), float(p), codes.NO_UNITS, referenced_images=prob_refs)
        for c, p in (result.get("probabilities") or {}).items()
    ]
    spacing = spacing_source(result)
    # The parameter's own unit must agree with what the spacing says, so a number never gets the wrong unit.
    expected = {"file": "mm", "none": "px"}.get(spacing, "-")
    for param in result.get("spatial_parameters") or []:
        details = param.get("details") or {}
        own_unit = details.get("distance_unit") if param["key"] == "spatial_relation" else param.get("unit")
        unit_ok = str(own_unit or "").startswith(expected)
        for concept, value, dimension in _size_values(param):
            unit, number = _unit(dimension, spacing), _number(value)
            if unit is not None and number is not None and unit_ok:
                out.append(hd.sr.Measurement(concept, number, unit, referenced_images=refs))
        if param["key"] == "texture" and _number(details.get("coefficient_of_variation")) is not None:
            cv = float(details["coefficient_of_variation"])
            out.append(hd.sr.Measurement(codes.TEXTURE_CV, cv, codes.NO_UNITS, referenced_images=refs))
        if param["key"] == "rcbv" and _number(param.get("value")) is not None:
            out.append(hd.sr.Measurement(codes.RCBV, float(param["value"]), codes.NO_UNITS, referenced_images=refs))
    return out + tumour_measurements(result, refs)


def tumour_measurements(result: Mapping[str, Any], refs: Sequence[Any]) -> list[Any]:
    """The segmented tumour's numbers: area, maximum and perpendicular diameters, share of relevance inside it.

    Sizes follow the segmentation's own spacing source: ``mm2``/``mm`` with a spacing read from the file,
    ``{pixels}`` without one, and no numbers with a spacing assumed by the user (the text item carries them).
    An empty segmentation has nothing to measure.
    """
    import highdicom as hd

    seg = result.get("segmentation") or {}
    if seg.get("status") != "measured":
        return []
    # The analysis's spacing, the segmentation's and its unit must all agree before a size gets a unit.
    spacing, unit = (spacing_source(result), seg.get("pixel_spacing_source") or "none"), seg.get("diameter_unit")
    sizes: list[tuple[Code, Any, Code]] = []
    if (*spacing, unit) in (("file", "file", "mm"), ("none", "none", "px")):
        length, area = (codes.MM, codes.MM2) if unit == "mm" else (codes.PIXELS, codes.PIXELS)
        sizes = [
            (codes.TUMOUR_AREA, seg.get("area_mm2") if unit == "mm" else seg.get("area_px"), area),
            (codes.TUMOUR_MAX_DIAMETER, seg.get("max_diameter"), length),
            (codes.TUMOUR_PERPENDICULAR, seg.get("perpendicular_diameter"), length),
        ]
    sizes.append((codes.RELEVANCE_IN_TUMOUR, seg.get("relevance_in_tumour"), codes.RATIO))
    return [
        hd.sr.Measurement(concept, float(value), unit_code, referenced_images=refs)
        for concept, value, unit_code in sizes
        if _number(value) is not None
    ]


def tumour_method_text(result: Mapping[str, Any]) -> str | None:
    """What the segmented tumour's figures are: the model, an estimate, how computed (None: no segmentation)."""
    seg = result.get("segmentation")
    if not seg:
        return None
    model = seg.get("model") or {}
    where = f" of slice {seg['slice_index']}" if seg.get("slice_index") is not None else ""
    text = (
        f"Segmentation model {model.get('name', '?')} (sha256 {model.get('sha256', '?')}), estimate: the tumour{where} "
        f"as outlined automatically ({mask_rule_text(seg)}), not an expert delineation. "
        f"{seg.get('method', '')}"
    )
    if seg.get("status") == "empty":
        return text + " The model outlined no tumour on this image."
    if seg.get("pixel_spacing_source") == "assumed":
        text += (
            " Sizes computed with a pixel spacing ASSUMED by the user, not read from the file: area "
            f"{seg.get('area_mm2')} mm², maximum diameter {seg.get('max_diameter')} mm, perpendicular "
            f"{seg.get('perpendicular_diameter')} mm."
        )
    return text


def _frames(source: DicomSource) -> list[int] | None:
    return [source.frame] if source.frame is not None else None


def text_items(result: Mapping[str, Any], source: DicomSource) -> list[Any]:
    """Every parameter's text and method note, then the comments (research use, input, warnings, notes)."""
    import highdicom as hd

    def text(concept: Code, value: str) -> Any:
        return hd.sr.TextContentItem(concept, value, relationship_type="CONTAINS")

    assumed = spacing_source(result) == "assumed"
    items = []
    for p in result.get("spatial_parameters") or []:
        value = str(p.get("text") or p.get("value"))
        if assumed and p["key"] in SIZE_KEYS:
            value = f"computed with a pixel spacing ASSUMED by the user, not read from the file: {value}"
        items.append(text(codes.parameter_code(p["key"], p["name"]), value))
        items.append(text(codes.parameter_method_code(p["key"], p["name"]), str(p.get("method", ""))))
    tumour = tumour_method_text(result)
    if tumour is not None:
        items.append(text(codes.TUMOUR_METHOD, tumour))
    items.append(text(codes.RESEARCH_USE, f"{DISCLAIMER} These results are unverified."))
    items.append(text(codes.INPUT_NOTE, input_note(result, source)))
    for line in [*(f"Warning: {w}" for w in result.get("warnings") or []), *(result.get("notes") or [])]:
        items.append(text(codes.COMMENT, str(line)))
    items.extend(text(codes.COMMENT, n) for n in source.notes)
    return items


def input_note(result: Mapping[str, Any], source: DicomSource) -> str:
    """What was analysed, and whether these results joined its study or opened a new one."""
    scan = result.get("scan") or {}
    where = f"file {scan.get('file', '?')} ({scan.get('format', '?')})"
    if scan.get("slice_index") is not None:
        where += f", slice {scan['slice_index']}"
    if source.from_dicom:
        return f"Analysed {where}; the results belong to its study {source.study_uid}."
    typed = "the patient details typed by the user" if result.get("patient") else "an anonymous patient"
    return (
        f"Analysed {where}, which is not DICOM: brainxai created a new study ({source.study_uid}) with "
        f"{typed}; its first instance is the analysed image as a Secondary Capture."
    )


def finding_code(result: Mapping[str, Any]) -> Code:
    """The predicted class, or "not assessable" when the image lies outside the model's training domain."""
    if result.get("assessable") is False:
        return codes.NOT_ASSESSABLE  # the class stays in the probabilities, for reference only
    return codes.class_code(str(result.get("prediction")))


def _image_library(source: DicomSource, images: Sequence[Dataset] | None = None) -> list[Any] | None:
    """The source(s) for the Image Library, or None when highdicom cannot describe them (e.g. MR without position)."""
    import highdicom as hd

    images = list(images) if images else [source.image]
    try:
        hd.sr.ImageLibrary(images)
    except (AttributeError, ValueError, TypeError) as exc:
        source.notes.append(f"No image library entry for the source ({exc}); the evidence sequence still names it.")
        return None
    return images


def measurement_report(
    result: Mapping[str, Any],
    source: DicomSource,
    series_images: Sequence[Dataset] | None = None,
    key_images: Sequence[Dataset] | None = None,
) -> Any:
    """The Comprehensive SR of one analysis, in the source's study, UNVERIFIED.

    ``series_images``: for a series analysis, every analysed instance (``source`` is the measured key
    image among them); the evidence and the measurement group then refer to all, the probabilities and
    the image library (optional in TID 1500; one entry costs tens of milliseconds to build) to
    ``key_images``, the slices the series probabilities are the mean over.
    """
    import highdicom as hd

    group_images = list(series_images) if series_images else [source.image]
    frames = None if series_images else _frames(source)
    group_sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(i, frames) for i in group_images]
    listed = any(i.SOPInstanceUID == source.image.SOPInstanceUID for i in group_images)

    model = result.get("model") or {}
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=source.uid("tracking"), identifier="brainxai analysis"),
        finding_type=finding_code(result),
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=f"brainxai {model.get('name', '')}".strip()[:64],
            version=str(result.get("brainxai_version") or model.get("version") or "unknown")[:64],
            parameters=[f"{k}: {v}" for k, v in algorithm_parameters(result).items()],
        ),
        measurements=measurements(result, source, key_images),
        source_images=group_sources,
    )
    group[0].ContentSequence.extend(text_items(result, source))
    observer = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=src.device_uid(result),
        name="brainxai",
        manufacturer_name=src.MANUFACTURER,
        model_name=str(model.get("name") or "unknown")[:64],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(codes.DEVICE, observer),
        ),
        procedure_reported=codes.BRAIN_MRI,
        imaging_measurements=[group],
        title=std.cid7021.ImagingMeasurementReport,
        referenced_images=_image_library(source, key_images),
    )
    created = source.created
    sr = hd.sr.ComprehensiveSR(
        evidence=group_images if listed else [source.image, *group_images],
        content=report[0],
        series_instance_uid=source.uid("sr-series"),
        series_number=SR_SERIES,
        sop_instance_uid=source.uid("sr"),
        instance_number=1,
        manufacturer=src.MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        contributing_equipment=[src.model_equipment(result)],
        series_description=src.series_description("measurement report"),
        coding_schemes=[codes.coding_scheme()],
        specific_character_set="ISO_IR 192",  # UTF-8: the texts hold mm², mm³ and other non-Latin-1 signs
        content_date=created.date(),
        content_time=created.time().replace(microsecond=0, tzinfo=None),
    )
    return sr
