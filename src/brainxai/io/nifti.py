"""NIfTI decoding: reorient to RAS, cut axial slices in radiological display, choose the slice to analyse."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from brainxai.io.raster import ImageReadError
from brainxai.io.scan_image import ScanImage
from brainxai.io.sequence import sequence_from_text
from brainxai.io.slices import SliceScorer, pick_slice

logger = logging.getLogger(__name__)

_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def volume_to_uint8(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Maps a volume to ``uint8`` with one window for all slices, between two percentiles.

    A single window keeps slices comparable, so slice scores reflect anatomy rather than per-slice
    contrast stretching. The upper percentile is taken over non-zero voxels (so a mostly empty
    field of view does not lower it) and stops a few hot voxels from darkening everything.
    """
    finite = volume[np.isfinite(volume)]
    body = finite[finite != 0]
    if body.size == 0:
        return np.zeros(volume.shape, dtype=np.uint8)
    lo = float(np.percentile(finite, low))
    hi = float(np.percentile(body, high))
    if hi <= lo:
        hi = lo + 1.0
    scaled = (np.nan_to_num(volume, nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def axial_slice(volume_ras: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of a RAS volume, displayed radiologically: anterior at the top, patient right on the left."""
    return np.ascontiguousarray(volume_ras[:, :, k].T[::-1, ::-1])


def load_nifti_image(data: bytes, name: str, canonical: bool = True) -> tuple[Any, np.ndarray]:
    """A NIfTI-1/2 image (reoriented to RAS when ``canonical``) and its voxels as ``float32``.

    Raises:
        ImageReadError: Corrupt header or truncated data.
    """
    import nibabel as nib

    try:
        image_class = nib.Nifti2Image if len(data) >= 540 and data[4:7] in (b"n+2", b"ni2") else nib.Nifti1Image
        img = image_class.from_bytes(data)
        if canonical:
            img = nib.as_closest_canonical(img)
        volume = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises assorted errors for broken headers and short data
        raise ImageReadError(f"{name}: not a readable NIfTI image ({exc})") from exc
    return img, volume


def as_3d(volume: np.ndarray, img: Any, name: str, meta: dict[str, Any]) -> np.ndarray:
    """The one 3-D volume to cut slices from (the first of a 4-D series; a 2-D image as one slice)."""
    if volume.ndim == 4:
        if volume.shape[3] > 1:
            meta["volume_note"] = f"4-D image with {volume.shape[3]} volumes; the first was used"
        volume = volume[..., 0]
    elif volume.ndim == 2:
        volume = volume[:, :, None]
    if volume.ndim != 3 or min(volume.shape[:2]) < 2:
        raise ImageReadError(f"{name}: unsupported NIfTI shape {tuple(img.shape)} (need a 3-D volume)")
    meta["volume_shape"] = [int(v) for v in volume.shape]
    return volume


def _slice_spacing(img: Any, meta: dict[str, Any]) -> tuple[float, float] | None:
    """``(row, column)`` spacing in mm of a displayed axial slice, or None when the header has no units."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    factor = _UNIT_TO_MM.get(img.header.get_xyzt_units()[0])
    if factor is None:
        meta["spacing_note"] = "spatial units not recorded in the NIfTI header; measurements are in pixels"
        return None
    if not all(z > 0 for z in zooms[:2]):
        return None
    meta["slice_thickness_mm"] = zooms[2] * factor if len(zooms) > 2 else None
    # Rows of the displayed slice run along y (anterior-posterior), columns along x.
    return (zooms[1] * factor, zooms[0] * factor)


def _choose_slice(
    slices: list[np.ndarray], slice_index: int | None, scorer: SliceScorer | None, name: str, meta: dict[str, Any]
) -> int:
    """The axial slice to analyse; records in ``meta`` how it was chosen."""
    n = len(slices)
    if slice_index is not None:
        if not 0 <= slice_index < n:
            raise ImageReadError(f"{name}: slice {slice_index} requested, the volume has {n} axial slices (0..{n - 1})")
        meta["slice_selection"] = f"axial slice chosen by the user ({n} in the volume)"
        return slice_index
    if n == 1:
        return 0
    chosen, how = pick_slice(slices, scorer, name)
    meta.update(how)
    return chosen


def read_nifti(data: bytes, name: str, slice_index: int | None = None, scorer: SliceScorer | None = None) -> ScanImage:
    """Decodes an uncompressed NIfTI-1/2 byte string into a :class:`ScanImage` of one axial slice.

    Args:
        data: The (already decompressed) file content.
        name: Name for messages and reports.
        slice_index: Axial slice to use, counted inferior to superior after reorientation to RAS.
        scorer: Scores candidate slices when ``slice_index`` is None (see :func:`pick_slice`).

    Raises:
        ImageReadError: Corrupt header, truncated data, unsupported dimensionality or bad slice index.
    """
    img, volume = load_nifti_image(data, name)
    meta: dict[str, Any] = {"plane": "axial", "display_convention": "radiological"}
    volume = as_3d(volume, img, name, meta)
    spacing = _slice_spacing(img, meta)
    volume8 = volume_to_uint8(volume)
    slices = [axial_slice(volume8, k) for k in range(volume.shape[2])]
    chosen = _choose_slice(slices, slice_index, scorer, name, meta)
    descrip = img.header.get("descrip")
    description = descrip.item().decode("latin-1", "replace").strip("\x00 ") if descrip is not None else ""
    meta["sequence"] = sequence_from_text(description, name)
    if description:
        meta["description"] = description
    return ScanImage(
        pixels=slices[chosen],
        pixel_spacing_mm=spacing,
        format="nifti",
        source_name=name,
        slice_index=chosen,
        meta={k: v for k, v in meta.items() if v is not None},
    )
