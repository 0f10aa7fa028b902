"""One image type for every supported format, and the reader that sniffs which format a file is.

Formats are recognised by their content, never by the file name: DICOM by ``DICM`` at byte 128,
NIfTI by its header size field (348 or 540) or a gzip stream holding one, JPEG/PNG/BMP/TIFF by their
signatures. Everything is decoded once, into a :class:`ScanImage` that carries the pixel spacing
when the format records one.
"""

from __future__ import annotations

import gzip
import io
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainxai.io.raster import ImageReadError, read_raster

logger = logging.getLogger(__name__)

#: Largest file we agree to read into memory (bytes); a NIfTI volume is the biggest legitimate input.
MAX_FILE_BYTES = 1 << 30

#: Scores a list of 2-D ``uint8`` slices; higher means more suspicious.
SliceScorer = Callable[[Sequence[np.ndarray]], Sequence[float]]


class NotABrainScanError(ImageReadError):
    """The file decodes as an image, but the image does not look like a brain scan."""


@dataclass
class ScanImage:
    """A decoded 2-D scan, ready for the model.

    Attributes:
        pixels: ``(H, W)`` ``uint8`` display image (windowed and, for MONOCHROME1, inverted).
        pixel_spacing_mm: ``(row, column)`` spacing in millimetres, or None when the format has none.
        format: ``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` or ``"nifti"``.
        source_name: File name shown in reports (no directories).
        slice_index: Slice of a volume that was analysed, or None for 2-D files.
        meta: Format-specific details (plane, sequence, slice scores, windowing...). No patient identifiers.
    """

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    format: str
    source_name: str
    slice_index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def info(self) -> dict[str, Any]:
        """JSON-serialisable description for reports (what the ``scan`` field of a result holds)."""
        return {
            "file": self.source_name,
            "format": self.format,
            "shape": list(self.shape),
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "slice_index": self.slice_index,
            **{k: v for k, v in self.meta.items() if _jsonable(v)},
        }


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def sniff_format(data: bytes) -> str | None:
    """Names the format of ``data`` from its first bytes, or None when unrecognised."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if _is_nifti_header(data):
        return "nifti"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def _is_nifti_header(data: bytes) -> bool:
    if len(data) < 348:
        return False
    for endian in "<>":
        size = struct.unpack(endian + "i", data[:4])[0]
        if size == 348 and data[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and len(data) >= 540 and data[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _gunzip(data: bytes, name: str) -> bytes:
    """Decompresses with a size cap so a gzip bomb cannot exhaust memory."""
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            while chunk := fh.read(1 << 22):
                out += chunk
                if len(out) > MAX_FILE_BYTES:
                    raise ImageReadError(f"{name}: decompressed size exceeds {MAX_FILE_BYTES} bytes")
    except (OSError, EOFError) as exc:
        raise ImageReadError(f"{name}: corrupt or truncated gzip data ({exc})") from exc
    return bytes(out)


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
    kind = sniff_format(data)
    if kind == "gzip":
        inner = _gunzip(data, name)
        if not _is_nifti_header(inner):
            raise ImageReadError(f"{name}: gzip file does not contain a NIfTI image")
        data, kind = inner, "nifti"
    if kind is None and Path(name).suffix.lower() in (".dcm", ".dicom", ".ima", "") and len(data) > 4:
        # DICOM streams without the 128-byte preamble exist (old PACS exports); pydicom can still try.
        kind = "dicom-raw"

    unsupported = ImageReadError(
        f"{name}: not a supported image (expected JPEG, PNG, BMP, TIFF, DICOM or NIfTI; "
        f"first bytes {data[:8]!r})"
    )
    if kind in ("dicom", "dicom-raw"):
        from brainxai.io.dicom import read_dicom

        try:
            return read_dicom(data, name, slice_index=slice_index, scorer=scorer, force=kind == "dicom-raw")
        except ImageReadError:
            if kind == "dicom-raw":
                # Only a guess from the name: say what the file is not, rather than blame DICOM details.
                raise unsupported from None
            raise
    if kind == "nifti":
        from brainxai.io.nifti import read_nifti

        return read_nifti(data, name, slice_index=slice_index, scorer=scorer)
    if kind in ("png", "jpeg", "bmp", "tiff"):
        if slice_index not in (None, 0):
            raise ImageReadError(f"{name}: a {kind.upper()} file has a single slice; slice {slice_index} requested")
        try:
            pixels = read_raster(data)
        except ImageReadError as exc:
            # read_raster names byte input "<bytes>"; the user knows the file by its name.
            raise ImageReadError(str(exc).replace("<bytes>", name, 1)) from exc
        # Raster exports record no anatomical spacing (a PNG's pHYs is print resolution, not anatomy).
        return ScanImage(pixels=pixels, pixel_spacing_mm=None, format=kind, source_name=name)
    raise unsupported


def pick_slice(
    slices: Sequence[np.ndarray], scorer: SliceScorer | None, name: str, min_tissue: float = 0.25
) -> tuple[int, dict[str, Any]]:
    """Chooses the slice of a volume to analyse.

    Slices with little tissue (less than ``min_tissue`` of the fullest slice's tissue area) are not
    candidates: near-empty end slices give meaningless model scores.

    Returns:
        The chosen index and metadata describing how it was chosen.
    """
    tissue = np.array([_tissue_fraction(s) for s in slices])
    if tissue.max() <= 0:
        raise ImageReadError(f"{name}: every slice is empty")
    candidates = [i for i, t in enumerate(tissue) if t >= min_tissue * tissue.max()]
    if scorer is None:
        best = int(np.argmax(tissue))
        return best, {"slice_selection": f"slice with the most tissue of {len(slices)} axial slices"}
    scores = [float(s) for s in scorer([slices[i] for i in candidates])]
    if len(scores) != len(candidates):
        raise ValueError(f"slice scorer returned {len(scores)} scores for {len(candidates)} slices")
    best = candidates[int(np.argmax(scores))]
    return best, {
        "slice_selection": (
            f"most suspicious of {len(candidates)} scored axial slices "
            f"({len(slices)} in the volume; near-empty slices skipped)"
        ),
        "slice_scores": {str(i): round(s, 4) for i, s in zip(candidates, scores)},
    }


def _tissue_fraction(image: np.ndarray) -> float:
    if image.max() == image.min():
        return 0.0
    _, mask = cv2.threshold(image, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(mask.mean())


def check_brain_scan(image: np.ndarray, name: str = "image") -> None:
    """Rejects images that cannot be a brain MRI/CT slice, with a message saying why.

    A plausibility guard, not a classifier: it catches blank images, noise, photographs and
    documents, which have no dark background around a single compact head-shaped foreground.

    Raises:
        NotABrainScanError: The image fails one of the checks.
    """
    h, w = image.shape
    if min(h, w) < 32:
        raise NotABrainScanError(f"{name}: {w}x{h} pixels is too small to be a brain scan")
    if max(h, w) > 8 * min(h, w):
        raise NotABrainScanError(f"{name}: aspect ratio {w}:{h} is not that of a brain scan")
    if float(image.std()) < 5.0:
        raise NotABrainScanError(f"{name}: the image is (nearly) uniform, no anatomy visible")
    small = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    # Anatomy is smooth at this scale; noise changes as much between neighbours as across the image.
    roughness = float(np.abs(np.diff(small.astype(np.float32), axis=1)).mean()) / max(float(small.std()), 1e-6)
    if roughness > 0.9:
        raise NotABrainScanError(f"{name}: the image looks like noise (no smooth anatomical structure)")
    otsu, fg = cv2.threshold(small, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    frac = float(fg.mean())
    # A ring just inside the edge: some exports add a thin bright frame around the picture.
    ring = small[4:-4, 4:-4]
    border = np.concatenate([ring[:6].ravel(), ring[-6:].ravel(), ring[:, :6].ravel(), ring[:, -6:].ravel()])
    dark_border = float((border < otsu).mean())
    if dark_border < 0.3:
        raise NotABrainScanError(
            f"{name}: no dark background around the head (only {dark_border:.0%} of the border is dark); "
            "this does not look like a brain MRI slice"
        )
    # The head is everything clearly above the background; Otsu alone splits dark tissue off it.
    head = cv2.morphologyEx((small > 0.5 * otsu).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(head, connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
    if largest / head.size < 0.05 or largest < 0.6 * head.sum():
        raise NotABrainScanError(
            f"{name}: no single head-sized foreground region (largest {largest / head.size:.0%} of the "
            f"image, {frac:.0%} foreground); this does not look like a brain MRI slice"
        )
