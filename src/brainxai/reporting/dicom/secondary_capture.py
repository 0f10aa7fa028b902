"""Secondary Capture images: the RGB overlay (heatmap on the scan), and the analysed slice of a non-DICOM input.

The overlay is for any viewer: an RGB image on the source's pixel grid with "RESEARCH USE ONLY"
burnt into its bottom edge (a viewer shows pixels, not our series description). The analysed slice
of a JPEG/PNG/NIfTI input becomes the first object of the new study, so the other objects have a
DICOM image to refer to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from brainxai.reporting.dicom import source as src
from brainxai.reporting.dicom.source import DicomSource

#: Series numbers of our objects (high, so they sort after the acquisition's own series).
SOURCE_SERIES = 9900
OVERLAY_SERIES = 9903

#: Burnt into the overlay image.
BANNER = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"


def patient_orientation(image: Dataset) -> tuple[str, str] | None:
    """Row and column directions as patient-orientation letters (``("L", "P")``) from ImageOrientationPatient."""
    iop = image.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    try:
        vectors = np.array([float(v) for v in iop], dtype=float).reshape(2, 3)
    except (TypeError, ValueError):
        return None
    letters = (("R", "L"), ("A", "P"), ("F", "H"))  # LPS: +x is the patient's left, +y posterior, +z head
    out = []
    for vec in vectors:
        order = np.argsort(-np.abs(vec))
        text = "".join(letters[i][int(vec[i] > 0)] for i in order if abs(vec[i]) > 0.3)
        if not text:
            return None
        out.append(text)
    return out[0], out[1]


def with_banner(rgb: np.ndarray, text: str = BANNER) -> np.ndarray:
    """``rgb`` with ``text`` written in white on a black strip along the bottom edge (scaled to the width)."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    scale = max(w / 900.0, 0.25)
    thickness = max(int(round(scale * 1.5)), 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    if tw > w - 4:  # shrink to fit narrow images
        scale *= (w - 4) / tw
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    strip = min(th + base + 6, h)
    out[h - strip :] = 0
    cv2.putText(out, text, (2, h - base - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def _geometry(image: Dataset) -> dict[str, Any]:
    """The SC's coordinate-system arguments: patient orientation (placeholder when unknown) and spacing."""
    orientation = patient_orientation(image)
    spacing = image.get("PixelSpacing")
    return {
        "coordinate_system": "PATIENT",
        "patient_orientation": orientation or ("L", "P"),
        "pixel_spacing": (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None,
        "_known": orientation is not None,
    }


def overlay_capture(
    overlay: np.ndarray,
    source: DicomSource,
    result: Mapping[str, Any],
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Any:
    """The overlay as an RGB Secondary Capture in the source's study, referring to the source image.

    A series' key slices share one overlay series: pass its UID and each capture's instance number.
    """
    import highdicom as hd

    if overlay.ndim != 3 or overlay.shape[2] != 3:
        raise ValueError(f"the overlay must be an RGB image, got shape {overlay.shape}")
    geometry = _geometry(source.image)
    known = geometry.pop("_known")
    sc = hd.sc.SCImage.from_ref_dataset(
        source.image,
        with_banner(overlay.astype(np.uint8)),
        "RGB",
        8,
        series_instance_uid=series_instance_uid or source.uid("overlay-series"),
        series_number=OVERLAY_SERIES,
        sop_instance_uid=source.uid("overlay"),
        instance_number=instance_number,
        manufacturer=src.MANUFACTURER,
        contributing_equipment=[src.model_equipment(result)],
        series_description=src.series_description("heatmap overlay"),
        **geometry,
    )
    _finish(sc, source, known, f"Explanation heatmap ({result.get('method', '?')}) on the analysed image")
    sc.SourceImageSequence = [src.source_reference(source.image, source.frame)]
    sc.DerivationDescription = (
        "Relevance heatmap of the model's prediction blended over the analysed image; colours are relative "
        "relevance, not tissue values. " + src.RESEARCH_LABEL
    )[:1024]
    return sc


def source_capture(pixels: np.ndarray, result: Mapping[str, Any], seed: str, created: Any) -> Any:
    """The analysed slice of a non-DICOM input as a greyscale Secondary Capture opening a new study."""
    import highdicom as hd

    scan = result.get("scan") or {}
    patient = src.patient_module(result.get("patient"), seed)
    age = patient.pop("PatientAge", None)
    spacing = scan.get("pixel_spacing_mm")
    sc = hd.sc.SCImage(
        pixels.astype(np.uint8),
        "MONOCHROME2",
        8,
        coordinate_system="PATIENT",
        study_instance_uid=str(generate_uid(entropy_srcs=[seed, "study"])),
        series_instance_uid=str(generate_uid(entropy_srcs=[seed, "source-series"])),
        series_number=SOURCE_SERIES,
        sop_instance_uid=str(generate_uid(entropy_srcs=[seed, "source"])),
        instance_number=1,
        manufacturer=src.MANUFACTURER,
        patient_orientation=("L", "P"),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
        study_id="BXA",
        study_date=created.date(),
        study_time=created.time().replace(microsecond=0, tzinfo=None),
        accession_number="",
        referring_physician_name=str((result.get("patient") or {}).get("referring_physician") or ""),
        series_description=f"{scan.get('file', 'input')} as analysed"[:64],
        patient_id=patient["PatientID"],
        patient_name=patient["PatientName"],
        patient_birth_date=patient["PatientBirthDate"],
        patient_sex=patient["PatientSex"] or None,
    )
    if age:
        sc.PatientAge = age
    if not patient["PatientSex"]:
        sc.PatientSex = ""  # Type 2: unknown
    sc.StudyDescription = f"brainxai analysis of a {scan.get('format', 'non-DICOM')} file - research use"[:64]
    _finish(sc, None, False, f"Analysed slice of {scan.get('file', 'the input')} ({scan.get('format', '?')})")
    sc.ConversionType = "WSD"  # converted on a workstation from a non-DICOM file
    return sc


def _finish(sc: Dataset, source: DicomSource | None, orientation_known: bool, comment: str) -> None:
    """Attributes both captures share: no patient-identifying burnt-in text, orientation, comments."""
    sc.BurnedInAnnotation = "NO"  # the banner identifies no patient
    sc.Laterality = ""  # Type 2C; the brain is not a paired structure
    if not orientation_known:
        sc.PatientOrientation = ""  # Type 2C: empty when not known
    sc.ImageComments = f"{comment}. {src.RESEARCH_LABEL}"[:10240]
    if source is not None:
        sc.ContentDate = source.created.strftime("%Y%m%d")
        sc.ContentTime = source.created.strftime("%H%M%S")
