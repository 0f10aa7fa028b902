"""Synthetic DICOM files for the tests (imported as ``dicomfiles``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

#: The window that shows stored values 0..255 unchanged, so a DICOM can hold a PNG's exact pixels.
IDENTITY_WINDOW = (128.0, 256.0)


def make_dicom(
    pixels: np.ndarray,
    *,
    spacing: tuple[float, float] | None = (0.5, 0.7),
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    orientation: tuple[float, ...] | None = (1, 0, 0, 0, 1, 0),
    description: str | None = None,
) -> bytes:
    """A minimal MR DICOM file (explicit VR little endian) holding ``pixels`` as stored values."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Secret^Person"
    ds.set_pixel_data(pixels.astype(np.uint16), photometric, 12)
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if description:
        ds.SeriesDescription = description
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def content_items(ds: Dataset) -> list[Dataset]:
    """Every content item of an SR tree, depth first."""
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out.extend(content_items(item))
    return out


def sr_numbers(sr: Dataset) -> dict[str, tuple[float, str]]:
    """``{concept meaning: (value, UCUM unit code)}`` of the NUM items under an SR's Imaging Measurements.

    (The Image Library describes the source with NUM items of its own: its spacing, orientation...)
    """
    (measurements,) = [i for i in content_items(sr) if i.ConceptNameCodeSequence[0].get("CodeValue") == "126010"]
    return {
        item.ConceptNameCodeSequence[0].CodeMeaning: (
            float(item.MeasuredValueSequence[0].NumericValue),
            item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue,
        )
        for item in content_items(measurements)
        if item.ValueType == "NUM"
    }


def deferred_and_eager(
    service: Any, source: Path, options: Any, root: Path, monkeypatch: Any
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """One analysis with deferred DICOM outputs, built later from its saved inputs and, for comparison, at once.

    The saved inputs are built as the web app builds them: from the result as stored (its JSON without
    file paths), the original and overlay PNGs and the PDF. Returns ``(built later, written at once)``, each
    file name -> bytes.
    """
    from brainxai.pipeline import outputs

    save = outputs.save_dicom_inputs

    def save_and_write(result: Any, rendered: Any, relevance: Any, src: Any, out_dir: Any) -> Path:
        outputs.write_dicom(result, rendered, relevance, src, root / "eager")  # the same analysis, built at once
        return save(result, rendered, relevance, src, out_dir)

    monkeypatch.setattr(outputs, "save_dicom_inputs", save_and_write)
    options = dataclasses.replace(options, dicom_out=root / "deferred", dicom_deferred=True)
    result = service.analyze(source, options, out_dir=root / "out")
    (inputs,) = (root / "deferred").iterdir()  # nothing built: only what to build from
    assert inputs.name.endswith(outputs.DICOM_INPUTS_SUFFIX)
    stored = json.loads(result.report_json.read_text())
    for key in ("images", "report_pdf", "report_json", "out_dir"):
        stored.pop(key, None)
    original, overlay = (outputs.png_array(result.images[k].read_bytes()) for k in ("original", "overlay"))
    pdf = result.report_pdf.read_bytes() if result.report_pdf is not None else None
    later = outputs.saved_dicom_files(inputs, stored, original, overlay, pdf)
    return later, {p.name: p.read_bytes() for p in sorted((root / "eager").iterdir())}
