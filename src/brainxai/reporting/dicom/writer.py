"""Builds and writes all DICOM outputs of one analysis.

- ``<base>-sr.dcm``: Comprehensive SR measurement report (:mod:`~brainxai.reporting.dicom.sr`);
- ``<base>-pm.dcm``: the relevance map as a Parametric Map, or ``<base>-seg.dcm``, the relevance
  region as a Segmentation, when highdicom cannot build a Parametric Map for this source;
- ``<base>-overlay-sc.dcm``: the overlay as an RGB Secondary Capture;
- ``<base>-pdf.dcm``: the PDF report as Encapsulated PDF (when there is a PDF);
- ``<base>-source-sc.dcm``: only for non-DICOM input, the analysed slice opening the new study.

Files are written atomically; the result dictionary (:meth:`AnalysisResult.to_dict` form) and
plain arrays go in, so this package does not depend on the pipeline.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from brainxai.reporting.dicom import source as src
from brainxai.util.files import atomic_write_bytes

logger = logging.getLogger(__name__)


@dataclass
class DicomOutputs:
    """The DICOM files of one analysis.

    Attributes:
        files: Path of each object by kind (``sr``, ``pm`` or ``seg``, ``overlay``, ``pdf``, ``source``).
        study_uid: The study they belong to (the source's, or the new one).
        new_study: Whether the study was created for a non-DICOM input.
        notes: What could not be written, and why.
    """

    files: dict[str, Path] = field(default_factory=dict)
    study_uid: str = ""
    new_study: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnalysisImages:
    """The arrays of one analysis on the analysed slice's pixel grid.

    Attributes:
        original: ``(H, W)`` ``uint8`` display image that was analysed.
        relevance: ``(H, W)`` float relevance map of the predicted class.
        region: ``(H, W)`` boolean relevance region.
        overlay: ``(H, W, 3)`` ``uint8`` RGB heatmap overlay.
        tumour: ``(H, W)`` boolean tumour outlined by a segmentation model, or None.
    """

    original: np.ndarray
    relevance: np.ndarray
    region: np.ndarray
    overlay: np.ndarray
    tumour: np.ndarray | None = None


def dicom_source(
    result: Mapping[str, Any], source: Dataset | None, original: np.ndarray
) -> tuple[src.DicomSource, Any]:
    """The context the objects refer to; for non-DICOM input also the Secondary Capture that opens the new study."""
    if source is not None:
        return src.from_dicom(source, result), None
    from brainxai.reporting.dicom.secondary_capture import source_capture

    seed = src.new_study_seed(result, original)
    created = src.created_at(result)
    capture = source_capture(original, result, seed, created)
    return src.DicomSource(capture, False, None, seed, created), capture


def build_dicom_outputs(
    result: Mapping[str, Any], images: AnalysisImages, pdf: bytes | None, source: Dataset | None
) -> tuple[dict[str, Dataset], DicomOutputs]:
    """Builds every object (not written); returns them by kind with the summary (files still empty)."""
    from brainxai.reporting.dicom.encapsulated_pdf import encapsulated_pdf
    from brainxai.reporting.dicom.secondary_capture import overlay_capture
    from brainxai.reporting.dicom.sr import measurement_report

    context, capture = dicom_source(result, source, images.original)
    objects: dict[str, Dataset] = {} if capture is None else {"source": capture}
    # The heatmap object first: what could not be written is said in the SR built after it.
    kind, heatmap = _heatmap_object(images, context, result, context.notes)
    # Beside a map, a Segmentation still carries the segmented tumour (with the relevance region as segment 1).
    tumour_seg = _segmentation(images, context, result, context.notes) if kind == "pm" and _has(images.tumour) else None
    objects["sr"] = measurement_report(result, context)
    if heatmap is not None:
        objects[kind] = heatmap
    if tumour_seg is not None:
        objects["seg"] = tumour_seg
    summary = DicomOutputs(study_uid=context.study_uid, new_study=capture is not None, notes=context.notes)
    objects["overlay"] = overlay_capture(images.overlay, context, result)
    if pdf is not None:
        objects["pdf"] = encapsulated_pdf(pdf, context, result)
    for ds in objects.values():
        _reproducible(ds, context.created)
    return objects, summary


#: Date and time attributes that highdicom fills with the moment of building: (date keyword or None, time keyword).
_BUILD_TIMES = (
    ("InstanceCreationDate", "InstanceCreationTime"),
    ("DateOfSecondaryCapture", "TimeOfSecondaryCapture"),
    (None, "ContributionDateTime"),  # the Contributing Equipment entry highdicom adds for itself
)


def _reproducible(ds: Dataset, created: Any) -> None:
    """Makes an object a function of the analysis alone: what highdicom draws at build time is derived instead.

    The creation (and content) dates become the analysis time, as the other objects' content dates are, and a
    random Dimension Organization UID one derived from the object's own UID. An object built again later
    (deferred outputs, :func:`encode_dicom_outputs`) is then the same instance byte for byte, not a second
    version under the same SOP Instance UID.
    """
    from pydicom.uid import generate_uid

    date, time = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = date, time
    dimension_uid = str(generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), "dimension-organization"]))
    for item in [ds, *(i for e in ds.iterall() if e.VR == "SQ" for i in e.value)]:
        for date_key, time_key in _BUILD_TIMES:
            if date_key is None and time_key in item:
                setattr(item, time_key, date + time)
            elif date_key is not None and time_key in item:
                setattr(item, date_key, date)
                setattr(item, time_key, time)
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = dimension_uid


def _heatmap_object(
    images: AnalysisImages, context: src.DicomSource, result: Mapping[str, Any], notes: list[str]
) -> tuple[str, Dataset | None]:
    """The Parametric Map; the Segmentation of the region when the source has no patient geometry for a map.

    A Parametric Map is an enhanced image that needs a frame of reference, position and orientation;
    a JPEG or PNG has none, and inventing them would be a lie. A Segmentation can do without.
    """
    from brainxai.reporting.dicom.parametric_map import has_patient_geometry, parametric_map

    if not has_patient_geometry(context.image):
        notes.append(
            "The analysed image has no patient geometry (frame of reference, position, orientation), so the "
            "relevance map is stored as a Segmentation of the relevance region, not as a Parametric Map."
        )
    else:
        try:
            return "pm", parametric_map(images.relevance, context, result)
        except (ValueError, TypeError, AttributeError, KeyError, RuntimeError) as exc:
            logger.warning("parametric map not possible (%s); writing a segmentation of the relevance region", exc)
            notes.append(f"Parametric map not written ({exc}); the relevance region is a Segmentation instead.")
    return "seg", _segmentation(images, context, result, notes)


def _has(mask: np.ndarray | None) -> bool:
    return mask is not None and bool(mask.any())


def _segmentation(
    images: AnalysisImages, context: src.DicomSource, result: Mapping[str, Any], notes: list[str]
) -> Dataset | None:
    """The Segmentation of the relevance region (and of the segmented tumour, when there is one); None on failure."""
    from brainxai.reporting.dicom.segmentation import relevance_segmentation

    try:
        return relevance_segmentation(images.region, context, result, images.tumour)
    except (ValueError, TypeError, AttributeError, KeyError, RuntimeError) as exc:
        logger.warning("segmentation not possible (%s)", exc)
        notes.append(f"Segmentation not written ({exc}).")
    return None


def dicom_file_name(base: str, kind: str) -> str:
    """The file name of one object: ``<base>-<kind>.dcm`` (``overlay-sc`` and ``source-sc`` for the captures)."""
    suffix = {"overlay": "overlay-sc", "source": "source-sc"}
    return f"{base}-{suffix.get(kind, kind)}.dcm"


def encode_dicom_outputs(
    result: Mapping[str, Any],
    images: AnalysisImages,
    *,
    base: str,
    pdf: bytes | None = None,
    source: Dataset | None = None,
) -> tuple[dict[str, bytes], DicomOutputs]:
    """Builds the DICOM objects of one analysis and encodes them as files, without writing them.

    Args: as for :func:`write_dicom_outputs`.

    Returns:
        The encoded files by kind (named by :func:`dicom_file_name`), and the summary (its ``files`` empty).
    """
    objects, summary = build_dicom_outputs(result, images, pdf, source)
    encoded: dict[str, bytes] = {}
    for kind, ds in objects.items():
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        encoded[kind] = buf.getvalue()
    return encoded, summary


def write_dicom_outputs(
    result: Mapping[str, Any],
    images: AnalysisImages,
    *,
    out_dir: str | Path,
    base: str,
    pdf: bytes | None = None,
    source: Dataset | None = None,
) -> DicomOutputs:
    """Builds the DICOM objects of one analysis and writes them as ``out_dir/<base>-<kind>.dcm``.

    Args:
        result: The analysis as :meth:`~brainxai.pipeline.result.AnalysisResult.to_dict` gives it.
        images: The analysed slice, relevance map, region and overlay.
        out_dir: Folder for the files (created if missing).
        base: Common start of the file names.
        pdf: The PDF report's bytes, to encapsulate (None: no Encapsulated PDF).
        source: The input's DICOM data set (the header is enough), or None for non-DICOM input.

    Returns:
        The files written and the study they belong to.
    """
    encoded, summary = encode_dicom_outputs(result, images, base=base, pdf=pdf, source=source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for kind, data in encoded.items():
        path = out / dicom_file_name(base, kind)
        atomic_write_bytes(path, data)
        summary.files[kind] = path
    return summary
