"""DICOM decoding: modality rescale, VOI window, MONOCHROME1 inversion, pixel spacing, plane and sequence.

Only the technical attributes needed to display and measure the image are read. Patient identifiers in
the file are never copied into :attr:`ScanImage.meta` (reports take patient details only from the user).
"""

from __future__ import annotations

import io
import logging
import math
from typing import Any

import numpy as np

from brainxai.io.raster import ImageReadError, to_uint8
from brainxai.io.scan_image import ScanImage
from brainxai.io.sequence import sequence_from_text
from brainxai.io.slices import SliceScorer, pick_slice

logger = logging.getLogger(__name__)


def window_to_uint8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Applies the DICOM linear VOI window (PS3.3 C.11.2.1.2.1) and maps the output to 0..255."""
    width = max(float(width), 1.0)
    if width == 1.0:
        # The standard's step function for a width of one.
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _first(value: Any) -> float | None:
    """First number of a possibly multi-valued DICOM element, or None."""
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if math.isfinite(out) else None


def pixel_spacing(ds: Any) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm from PixelSpacing, or None when absent or implausible."""
    raw = ds.get("PixelSpacing")
    if raw is None or len(raw) != 2:
        return None
    try:
        row, col = float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        return None
    if not (0 < row < 50 and 0 < col < 50):
        logger.warning("ignoring implausible PixelSpacing %s", list(raw))
        return None
    return (row, col)


def plane_and_convention(ds: Any) -> tuple[str | None, str | None]:
    """Imaging plane (axial/coronal/sagittal/oblique) and left-right display convention from the orientation.

    DICOM patient axes are LPS (+x toward the patient's left). When the row direction points toward the
    patient's left, the patient's right is on the image's left: the radiological convention.
    """
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None, None
    try:
        r = np.array([float(v) for v in iop[:3]])
        c = np.array([float(v) for v in iop[3:]])
    except (TypeError, ValueError):
        return None, None
    n = np.cross(r, c)
    if not np.isfinite(n).all() or np.linalg.norm(n) < 0.5:
        return None, None
    n = np.abs(n / np.linalg.norm(n))
    axis = int(np.argmax(n))
    plane = ("sagittal", "coronal", "axial")[axis] if n[axis] >= 0.8 else "oblique"
    convention = None
    if plane in ("axial", "coronal") and abs(r[0]) >= 0.7:
        convention = "radiological" if r[0] > 0 else "neurological"
    return plane, convention


def _to_gray(arr: np.ndarray, photometric: str, frames: int) -> np.ndarray:
    colour = arr.ndim == (4 if frames > 1 else 3) and arr.shape[-1] in (3, 4)
    if colour:
        # pydicom's pixel_array already converts YBR to RGB, so ITU-R 601 luma applies to both.
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return arr


def _read_dataset(data: bytes, name: str, force: bool) -> Any:
    """The parsed DICOM data set; it must hold pixel data."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(f"{name}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: DICOM file holds no image (no PixelData element)")
    return ds


def _pixel_volume(ds: Any, name: str) -> tuple[np.ndarray, int, str]:
    """``(frames, H, W)`` grey values after the modality LUT, the frame count and the photometric interpretation."""
    from pydicom.pixels import apply_modality_lut

    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated or undecodable pixel data
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {ts.name})" if ts is not None and ts.is_compressed else ""
        raise ImageReadError(f"{name}: cannot decode DICOM pixel data{hint}: {exc}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    arr = _to_gray(np.asarray(arr), photometric, frames)
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float64)
    if frames == 1 and arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < 2 or arr.shape[2] < 2:
        raise ImageReadError(f"{name}: unexpected DICOM pixel array shape {arr.shape}")
    return arr, frames, photometric


def _display_slices(arr: np.ndarray, ds: Any, photometric: str) -> tuple[list[np.ndarray], str]:
    """The ``uint8`` display frames (VOI window, MONOCHROME1 inverted) and how they were windowed."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0 and photometric.startswith("MONO"):
        slices = [window_to_uint8(f, center, width) for f in arr]
        window_note = f"window centre {center:g}, width {width:g} (from the file)"
    else:
        # One mapping for all frames, so frames stay comparable.
        slices = list(to_uint8(arr))
        window_note = "full intensity range (no window in the file)"
    if photometric == "MONOCHROME1":
        slices = [255 - s for s in slices]
    return slices, window_note


def _choose_frame(
    slices: list[np.ndarray],
    frames: int,
    slice_index: int | None,
    scorer: SliceScorer | None,
    name: str,
    meta: dict[str, Any],
) -> int:
    """The frame to analyse; records in ``meta`` how it was chosen."""
    if frames <= 1:
        if slice_index not in (None, 0):
            raise ImageReadError(f"{name}: single-frame DICOM; slice {slice_index} requested")
        return 0
    meta["n_frames"] = frames
    if slice_index is None:
        chosen, how = pick_slice(slices, scorer, name)
        meta.update(how)
        return chosen
    if not 0 <= slice_index < frames:
        raise ImageReadError(f"{name}: frame {slice_index} requested, the file has {frames} (0..{frames - 1})")
    meta["slice_selection"] = "frame chosen by the user"
    return slice_index


def _acquisition_meta(ds: Any) -> dict[str, Any]:
    """Modality, series, sequence, plane and rescale: technical attributes only, never patient identifiers."""
    plane, convention = plane_and_convention(ds)
    modality = str(ds.get("Modality", "")) or None
    series = str(ds.get("SeriesDescription", "")) or None
    sequence = (
        sequence_from_text(series, str(ds.get("ProtocolName", "")), str(ds.get("SequenceName", "")))
        if modality in (None, "MR")
        else None
    )
    return {
        "modality": modality,
        "series_description": series,
        "sequence": sequence,
        "plane": plane,
        "display_convention": convention,
        "slice_thickness_mm": _first(ds.get("SliceThickness")),
        "rescale": {
            "slope": _first(ds.get("RescaleSlope")) or 1.0,
            "intercept": _first(ds.get("RescaleIntercept")) or 0.0,
        },
    }


def decode_frames(ds: Any, name: str) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
    """Every frame of a parsed data set: values after the modality LUT ``(F, H, W)``, display frames, metadata.

    The display frames are windowed as :func:`read_dicom` windows them (the file's first VOI window, or
    one mapping of the whole pixel range); the metadata holds the technical attributes only.

    Raises:
        ImageReadError: No pixel data, or pixel data that cannot be decoded (the transfer syntax is named).
    """
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: DICOM file holds no image (no PixelData element)")
    arr, _, photometric = _pixel_volume(ds, name)
    slices, window_note = _display_slices(arr, ds, photometric)
    meta = {"window": window_note, "photometric_interpretation": photometric, **_acquisition_meta(ds)}
    return arr, slices, meta


def read_dicom(
    data: bytes,
    name: str,
    slice_index: int | None = None,
    scorer: SliceScorer | None = None,
    force: bool = False,
) -> ScanImage:
    """Decodes a DICOM image (single or multi-frame) into a :class:`ScanImage`.

    Modality LUT (RescaleSlope/Intercept) first, then the first VOI window in the file (or the
    image's own range when it has none), then inversion for MONOCHROME1 so that dense/bright is
    always bright.

    Raises:
        ImageReadError: Not DICOM, no pixel data, compressed without a decoder, or truncated.
    """
    ds = _read_dataset(data, name, force)
    arr, frames, photometric = _pixel_volume(ds, name)
    slices, window_note = _display_slices(arr, ds, photometric)
    meta: dict[str, Any] = {"window": window_note, "photometric_interpretation": photometric}
    chosen = _choose_frame(slices, frames, slice_index, scorer, name, meta)
    spacing = pixel_spacing(ds)
    if spacing is None and "ImagerPixelSpacing" in ds:
        meta["spacing_note"] = "ImagerPixelSpacing (detector plane) ignored; no PixelSpacing in the file"
    meta.update(_acquisition_meta(ds))
    return ScanImage(
        pixels=np.ascontiguousarray(slices[chosen]),
        pixel_spacing_mm=spacing,
        format="dicom",
        source_name=name,
        slice_index=chosen if frames > 1 else None,
        meta={k: v for k, v in meta.items() if v is not None},
    )
