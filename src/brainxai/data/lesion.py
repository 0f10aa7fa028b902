"""Lesion masks: reading, resizing, dilating, mirroring, and in-painting the lesion away.

Used to ask whether a model relies on the tumour: in-paint the (dilated) lesion with a fill taken
from the surrounding tissue and see how much the class probability falls, against in-painting the
same area mirrored left-right (a control region of equal size on the other hemisphere). Also used for
mask-aware training augmentation. All functions are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: Radius (pixels) of the neighbourhood ``cv2.inpaint`` looks at for each filled pixel.
_INPAINT_RADIUS = 7


def _check_2d(array: np.ndarray, name: str) -> None:
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {array.shape}")


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a mask by ``pixels`` in every direction (Euclidean disk structuring element, applied with cv2).

    Args:
        mask: ``(H, W)`` mask; any non-zero value counts as inside.
        pixels: Dilation radius in pixels; 0 returns the mask unchanged (as bool).

    Returns:
        ``(H, W)`` bool mask.
    """
    _check_2d(mask, "mask")
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, got {pixels}")
    binary = np.asarray(mask) != 0
    if pixels == 0 or not binary.any():
        return binary
    # A Euclidean disk (every pixel within ``pixels`` of the mask); cv2's MORPH_ELLIPSE is slightly boxier.
    yy, xx = np.mgrid[-pixels : pixels + 1, -pixels : pixels + 1]
    kernel = (yy**2 + xx**2 <= pixels**2).astype(np.uint8)
    return cv2.dilate(binary.astype(np.uint8), kernel).astype(bool)


def inpaint_lesion(image: np.ndarray, mask: np.ndarray, dilate_px: int = 5) -> np.ndarray:
    """Replace the lesion with a fill propagated from the surrounding tissue.

    The mask is dilated by ``dilate_px`` first, so that the lesion's bright rim does not leak into the
    fill. The fill is Telea's fast-marching in-painting (``cv2.INPAINT_TELEA``): on brain slices it
    continues the surrounding grey levels smoothly, whereas Navier-Stokes drags streaks of the
    rim across large lesions. It is a plausible smooth tissue patch, not a synthesised anatomy.

    Args:
        image: ``(H, W)`` uint8 slice.
        mask: ``(H, W)`` lesion mask (non-zero = lesion).
        dilate_px: Dilation radius applied to the mask before filling.

    Returns:
        ``(H, W)`` uint8 image; pixels outside the dilated mask are bit-identical to ``image``.
    """
    _check_2d(image, "image")
    _check_2d(mask, "mask")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    region = dilate_mask(mask, dilate_px)
    if not region.any():
        return image.copy()
    filled = cv2.inpaint(np.ascontiguousarray(image), region.astype(np.uint8), _INPAINT_RADIUS, cv2.INPAINT_TELEA)
    # cv2 leaves the outside untouched today; np.where makes the guarantee independent of that.
    return np.where(region, filled, image).astype(np.uint8)


#: Fills :func:`fill_region` knows: cv2's Telea in-painting, or tissue moved from elsewhere in the slice.
FILLS = ("telea", "transplant")


#: Reflections tried as a transplant's source, in order: left-right (the other hemisphere), top-bottom, both.
_REFLECTIONS = (
    (slice(None), slice(None, None, -1)),
    (slice(None, None, -1), slice(None)),
    (slice(None, None, -1), slice(None, None, -1)),
)


def transplant_fill(image: np.ndarray, region: np.ndarray, avoid: np.ndarray, feather_px: int = 3) -> np.ndarray:
    """Fill ``region`` with the slice's own tissue from its reflection that does not touch ``avoid``.

    The source is the region reflected left-right (the other hemisphere of an axial or coronal slice), else
    top-bottom, else both; the first whose source pixels miss ``avoid`` (the dilated lesion) and lie in the
    head (non-zero) for at least 90% is used, its mean brought to that of a 3-pixel ring around the region,
    and blended over ``feather_px`` pixels from the border into a Telea fill, so that no seam is left. When
    no reflection qualifies the Telea fill is returned. Unlike Telea's smooth patch the filling has the
    texture of tissue; a model trained on it has never seen a Telea patch.

    Args:
        image: ``(H, W)`` uint8 slice.
        region: ``(H, W)`` bool area to fill.
        avoid: ``(H, W)`` bool pixels that must not be copied (the lesion).
        feather_px: Width of the blend into the Telea fill at the region's border.

    Returns:
        ``(H, W)`` uint8 image; pixels outside ``region`` are bit-identical to ``image``.
    """
    _check_2d(image, "image")
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return image.copy()
    base = inpaint_lesion(image, region, dilate_px=0)
    head = image > 0
    for rows, cols in _REFLECTIONS:
        source = region[rows, cols]
        if (source & avoid).any() or head[source].mean() < 0.9:
            continue
        moved = image[rows, cols].astype(np.float32)
        ring = dilate_mask(region, 3) & ~region
        if ring.any():
            moved += float(image[ring].mean()) - float(moved[ring].mean())
        depth = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
        alpha = np.clip(depth / max(feather_px, 1), 0.0, 1.0)
        blended = alpha * moved + (1 - alpha) * base.astype(np.float32)
        return np.where(region, np.clip(np.rint(blended), 0, 255), image).astype(np.uint8)
    return base


def fill_region(image: np.ndarray, region: np.ndarray, avoid: np.ndarray, fill: str = "telea") -> np.ndarray:
    """Fill ``region`` (already dilated) by one of :data:`FILLS`; ``avoid`` is the lesion (for ``transplant``)."""
    if fill == "telea":
        return inpaint_lesion(image, region, dilate_px=0)
    if fill == "transplant":
        return transplant_fill(image, region, avoid)
    raise ValueError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)}")


def mirrored_mask(mask: np.ndarray) -> np.ndarray:
    """The same area mirrored left-right about the image's vertical midline (the control region).

    Args:
        mask: ``(H, W)`` mask.

    Returns:
        ``(H, W)`` bool mask with ``out[:, x] == mask[:, W - 1 - x]``.
    """
    _check_2d(mask, "mask")
    return np.ascontiguousarray((np.asarray(mask) != 0)[:, ::-1])


def inpaint_regions(mask: np.ndarray, dilate_px: int = 5) -> tuple[np.ndarray, np.ndarray, float]:
    """The area to in-paint for the lesion and for its mirrored control, both already dilated.

    Args:
        mask: ``(S, S)`` lesion mask in the model input.
        dilate_px: Dilation radius in pixels.

    Returns:
        ``(lesion, control, overlap)``: the dilated lesion; the dilated mirrored lesion less the dilated
        lesion; the share of the dilated mirrored lesion removed for lying on the lesion (NaN when the
        mask is empty).
    """
    lesion = dilate_mask(mask, dilate_px)
    mirrored = dilate_mask(mirrored_mask(mask), dilate_px)
    control = mirrored & ~lesion
    overlap = 1.0 - control.sum() / mirrored.sum() if mirrored.any() else float("nan")
    return lesion, control, float(overlap)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a binary mask image (0/255 or 0/1, single channel; PNG recommended).

    Args:
        path: Mask file.

    Returns:
        ``(H, W)`` bool mask.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded, is not single-channel, or is not binary.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"cannot decode mask file {path} (not an image?)")
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise ValueError(f"mask file {path} must be single-channel, got shape {raw.shape}")
    values = set(np.unique(raw).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        shown = sorted(values)[:6]
        raise ValueError(f"mask file {path} is not binary (0/255 or 0/1); values include {shown}")
    return raw != 0


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a mask onto the pixel grid the images use (area when shrinking, else linear; kept where >= 0.5).

    ``cv2.INTER_NEAREST`` samples half a source pixel off the grid that image resizing uses (a 0.7 px
    shift of a square's centre at a 0.7 scale), which would put the mask beside the lesion.

    Args:
        mask: ``(H, W)`` mask.
        shape: Target ``(height, width)``.

    Returns:
        Bool mask of ``shape``.
    """
    _check_2d(mask, "mask")
    height, width = shape
    binary = np.asarray(mask) != 0
    if binary.shape == (height, width):
        return binary
    shrinking = height * width < binary.shape[0] * binary.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(binary.astype(np.float32), (width, height), interpolation=interp) >= 0.5)
