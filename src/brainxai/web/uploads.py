"""Upload gatekeeping: size limits, content sniffing, decompression-bomb refusal, safe names.

Nothing about an upload is trusted: its type comes from its first bytes, never from its extension;
its dimensions are read from the header and refused before any pixel is decoded; its name is kept
only for display and never becomes a path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import unicodedata
import warnings
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from brainxai.io.raster import MAX_PIXELS, ImageReadError, read_raster
from brainxai.io.sniff import sniff_format
from brainxai.util.compression import DecompressedTooLargeError, DecompressionError, gunzip_bounded
from brainxai.util.names import strip_scan_suffix

#: Canonical suffix per sniffed kind; the analysis service picks its reader from it.
SUFFIXES: dict[str, str] = {
    "jpeg": ".jpg",
    "png": ".png",
    "bmp": ".bmp",
    "tiff": ".tif",
    "dicom": ".dcm",
    "nifti": ".nii",
    "nifti-gz": ".nii.gz",
}

ACCEPTED_DESCRIPTION = "JPEG, PNG, BMP, TIFF, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"
_NIFTI_HEADER_BYTES = 544  # NIfTI-2 header (540) plus the 4-byte extension flag


class UploadError(ValueError):
    """An upload that is refused; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that passed every check.

    Attributes:
        data: The file's bytes, unchanged.
        kind: One of :data:`SUFFIXES`' keys, from the content.
        display_name: The client's file name made harmless, for display and reports only.
        sha256: Hex digest of ``data``.
    """

    data: bytes
    kind: str
    display_name: str
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def service_filename(self) -> str:
        """Display stem + the suffix of the sniffed type (a PNG named .jpg is handed over as .png)."""
        return strip_scan_suffix(self.display_name) + SUFFIXES[self.kind]


def safe_display_name(filename: str | None, max_length: int = 120) -> str:
    """The last component of a client file name, without control or path characters.

    Used for display only; files are always stored under generated names.
    """
    name = unicodedata.normalize("NFC", filename or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if len(name) > max_length:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: max_length - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:max_length]
    return name or "upload"


def sniff(data: bytes) -> str | None:
    """The kind of file ``data`` holds, from its magic bytes (a :data:`SUFFIXES` key), or None."""
    kind = sniff_format(data)
    if kind == "gzip":
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(data)).read(_NIFTI_HEADER_BYTES)
        except (OSError, EOFError, zlib.error):
            return None
        return "nifti-gz" if sniff_format(head) == "nifti" else None
    return kind if kind in SUFFIXES else None


def _check_raster(data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Image.open reads the header only: the size is known before anything is decoded.
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(f"image refused as a decompression bomb ({exc})", 413) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UploadError(f"the image header cannot be read ({exc})") from exc
    if width * height > MAX_PIXELS:
        raise UploadError(
            f"image of {width}x{height} pixels exceeds the limit of {MAX_PIXELS:,} pixels (refused before decoding)",
            413,
        )
    try:
        read_raster(data)
    except ImageReadError as exc:
        raise UploadError(f"the image is truncated or corrupt: {str(exc).removeprefix('<bytes>: ')}") from exc


def _check_dicom(data: bytes, max_volume_bytes: int) -> None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            has_pixels = any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            bits = int(ds.get("BitsAllocated", 8) or 8)
    except InvalidDicomError as exc:
        raise UploadError(f"not a valid DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on malformed data; all mean "unreadable".
        raise UploadError(f"the DICOM file cannot be parsed ({type(exc).__name__}: {exc})") from exc
    if not has_pixels:
        raise UploadError("the DICOM file holds no image (no pixel data element)")
    if rows <= 0 or cols <= 0:
        raise UploadError("the DICOM file does not give its image size (Rows/Columns)")
    if rows * cols > MAX_PIXELS:
        raise UploadError(f"DICOM frame of {cols}x{rows} pixels exceeds the limit of {MAX_PIXELS:,} pixels", 413)
    if frames * rows * cols * samples * max(bits, 8) // 8 > max_volume_bytes:
        raise UploadError("the DICOM pixel data would decompress beyond the volume size limit", 413)


def _inflate_bounded(data: bytes, limit: int) -> bytes:
    """Gunzips ``data`` but stops with 413 as soon as the output passes ``limit`` bytes."""
    try:
        return gunzip_bounded(data, limit)
    except DecompressedTooLargeError as exc:
        raise UploadError(f"the compressed volume expands beyond {limit:,} bytes (refused)", 413) from exc
    except DecompressionError as exc:
        raise UploadError(str(exc)) from exc


def _check_nifti(data: bytes, max_volume_bytes: int) -> None:
    import nibabel as nib
    import numpy as np

    raw = data
    if data.startswith(b"\x1f\x8b"):
        raw = _inflate_bounded(data, max_volume_bytes + _NIFTI_HEADER_BYTES + (1 << 20))
    header_class = nib.Nifti2Header if raw[4:7] in (b"n+2", b"ni2") else nib.Nifti1Header
    try:
        header = header_class.from_fileobj(io.BytesIO(raw[:_NIFTI_HEADER_BYTES]), check=True)
        shape = tuple(int(d) for d in header.get_data_shape())
        itemsize = header.get_data_dtype().itemsize
        offset = int(header.get_data_offset())
    except Exception as exc:  # nibabel's header errors have no common base class.
        raise UploadError(f"the NIfTI header is invalid ({exc})") from exc
    if len(shape) < 2 or min(shape) <= 0:
        raise UploadError(f"the NIfTI volume has no 2-D slices (shape {shape})")
    if shape[0] * shape[1] > MAX_PIXELS:
        raise UploadError(f"NIfTI slices of {shape[0]}x{shape[1]} exceed the limit of {MAX_PIXELS:,} pixels", 413)
    nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
    if nbytes > max_volume_bytes:
        raise UploadError(f"the NIfTI volume ({nbytes:,} bytes) exceeds the limit of {max_volume_bytes:,}", 413)
    if len(raw) < offset + nbytes:
        raise UploadError(f"the NIfTI file is truncated ({len(raw):,} bytes, header promises {offset + nbytes:,})")


def check_upload(data: bytes, filename: str | None, *, max_bytes: int, max_volume_bytes: int) -> CheckedUpload:
    """Validates one uploaded scan.

    Args:
        data: The uploaded bytes.
        filename: The client's file name (display only).
        max_bytes: Largest accepted file.
        max_volume_bytes: Largest decompressed volume (NIfTI, multi-frame DICOM).

    Returns:
        The checked upload.

    Raises:
        UploadError: With the HTTP status (413, 415 or 422) and a message for the user.
    """
    display = safe_display_name(filename)
    if not data:
        raise UploadError(f"{display}: the file is empty")
    if len(data) > max_bytes:
        raise UploadError(f"{display}: {len(data):,} bytes exceeds the upload limit of {max_bytes:,} bytes", 413)
    kind = sniff(data)
    if kind is None:
        raise UploadError(
            f"{display}: unsupported or unrecognised content; expected {ACCEPTED_DESCRIPTION} "
            "(the content is checked, not the extension)",
            415,
        )
    try:
        if kind in ("jpeg", "png", "bmp", "tiff"):
            _check_raster(data)
        elif kind == "dicom":
            _check_dicom(data, max_volume_bytes)
        else:
            _check_nifti(data, max_volume_bytes)
    except UploadError as exc:
        raise UploadError(f"{display}: {exc.message}", exc.status_code) from exc
    return CheckedUpload(data=data, kind=kind, display_name=display, sha256=hashlib.sha256(data).hexdigest())


def is_safe_relative(path: str) -> bool:
    """True for a relative path with no ``..`` or absolute parts (for paths read back from the DB)."""
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and "\\" not in path and bool(p.parts)
