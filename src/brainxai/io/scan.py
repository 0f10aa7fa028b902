"""Reading any supported scan: load the bytes, recognise the format, hand over to its reader.

Formats are recognised by their content, never by the file name (:mod:`brainxai.io.sniff`).
Everything is decoded once, into a :class:`~brainxai.io.scan_image.ScanImage` that carries the pixel
spacing when the format records one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainxai.io.dicom import read_dicom
from brainxai.io.nifti import read_nifti
from brainxai.io.raster import ImageReadError, read_raster
from brainxai.io.scan_image import ScanImage
from brainxai.io.slices import SliceScorer
from brainxai.io.sniff import is_nifti_header, sniff_format
from brainxai.util.compression import DecompressedTooLargeError, DecompressionError, gunzip_bounded

logger = logging.getLogger(__name__)

#: Largest file we agree to read into memory (bytes); a NIfTI volume is the biggest legitimate input.
MAX_FILE_BYTES = 1 << 30

_RASTER_FORMATS = ("png", "jpeg", "bmp", "tiff")


def _gunzip(data: bytes, name: str) -> bytes:
    """Decompresses with a size cap so a gzip bomb cannot exhaust memory."""
    try:
        return gunzip_bounded(data, MAX_FILE_BYTES)
    except DecompressedTooLargeError as exc:
        raise ImageReadError(f"{name}: decompressed size exceeds {MAX_FILE_BYTES} bytes") from exc
    except DecompressionError as exc:
        # The zlib error says what is wrong with the stream more directly than the wrapper's message.
        raise ImageReadError(f"{name}: corrupt or truncated gzip data ({exc.__cause__ or exc})") from exc


def _load_bytes(source: str | Path | bytes, filename: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), filename or "upload"
    path = Path(source)
    name = filename or path.name
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageReadError(f"{path}: {size} bytes exceeds the limit of {MAX_FILE_BYTES}")
    return path.read_bytes(), name


def _format_of(data: bytes, name: str) -> tuple[bytes, str | None]:
    """The (decompressed) content and its format; ``"dicom-raw"`` is a guess from the file name."""
    kind = sniff_format(data)
    if kind == "gzip":
        inner = _gunzip(data, name)
        if not is_nifti_header(inner):
            raise ImageReadError(f"{name}: gzip file does not contain a NIfTI image")
        return inner, "nifti"
    if kind is None and Path(name).suffix.lower() in (".dcm", ".dicom", ".ima", "") and len(data) > 4:
        # DICOM streams without the 128-byte preamble exist (old PACS exports); pydicom can still try.
        return data, "dicom-raw"
    return data, kind


def _read_raster_scan(data: bytes, name: str, kind: str, slice_index: int | None) -> ScanImage:
    if slice_index not in (None, 0):
        raise ImageReadError(f"{name}: a {kind.upper()} file has a single slice; slice {slice_index} requested")
    try:
        pixels = read_raster(data)
    except ImageReadError as exc:
        # read_raster names byte input "<bytes>"; the user knows the file by its name.
        raise ImageReadError(str(exc).replace("<bytes>", name, 1)) from exc
    # Raster exports record no anatomical spacing (a PNG's pHYs is print resolution, not anatomy).
    return ScanImage(pixels=pixels, pixel_spacing_mm=None, format=kind, source_name=name)


def read_scan(
    source: str | Path | bytes,
    filename: str | None = None,
    slice_index: int | None = None,
    scorer: SliceScorer | None = None,
) -> ScanImage:
    """Decodes a JPEG/PNG/BMP/TIFF, DICOM or NIfTI file into a :class:`ScanImage`.

    Args:
        source: A path or the file's bytes.
        filename: Name to report (defaults to the path's name, or ``"upload"`` for bytes).
        slice_index: For volumes (NIfTI, multi-frame DICOM): the axial slice/frame to use.
        scorer: For volumes without ``slice_index``: scores candidate slices, and the highest-scoring
            one is used (the analysis service passes ``1 - P(notumor)``). Without a scorer, the slice
            with the most tissue is used.

    Raises:
        ImageReadError: Not a supported image, truncated, empty, or the slice index is out of range.
    """
    data, name = _load_bytes(source, filename)
    if not data:
        raise ImageReadError(f"{name}: empty file")
    data, kind = _format_of(data, name)
    unsupported = ImageReadError(
        f"{name}: not a supported image (expected JPEG, PNG, BMP, TIFF, DICOM or NIfTI; first bytes {data[:8]!r})"
    )
    if kind in ("dicom", "dicom-raw"):
        try:
            return read_dicom(data, name, slice_index=slice_index, scorer=scorer, force=kind == "dicom-raw")
        except ImageReadError:
            if kind == "dicom-raw":
                # Only a guess from the name: say what the file is not, rather than blame DICOM details.
                raise unsupported from None
            raise
    if kind == "nifti":
        return read_nifti(data, name, slice_index=slice_index, scorer=scorer)
    if kind in _RASTER_FORMATS:
        return _read_raster_scan(data, name, kind, slice_index)
    raise unsupported
