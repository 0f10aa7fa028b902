"""Decoding raster images (JPEG, PNG 8/16-bit, RGB/RGBA/L) into 2-D ``uint8`` arrays."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Largest image (in pixels) we agree to decode; larger files are refused as decompression bombs.
MAX_PIXELS = 64_000_000


class ImageReadError(ValueError):
    """A file could not be read as an image."""


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Maps an array of any numeric type to ``uint8``.

    ``uint8`` input is returned as is. Wider integer or float data is scaled linearly from its own
    minimum and maximum to 0..255 (a constant image becomes all zeros).
    """
    if array.dtype == np.uint8:
        return array
    a = array.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_uint8(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels count as background (black), not as whatever colour they hide.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("L"))


def read_raster(source: str | Path | bytes) -> np.ndarray:
    """Reads a raster image into a 2-D ``uint8`` grayscale array.

    Args:
        source: A path or the file's bytes.

    Returns:
        ``(H, W)`` ``uint8`` array. Colour images are converted with ITU-R 601 luma weights, which is
        exact for the grayscale-content RGB files typical of MRI exports.

    Raises:
        ImageReadError: The data is not a readable image, is truncated or is too large.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageReadError(f"{name}: {img.width}x{img.height} pixels exceeds the limit of {MAX_PIXELS}")
                img.load()
                gray = _pil_to_gray(img)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{name}: refused, image too large ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{name}: not a readable image ({exc})") from exc
    if gray.ndim != 2 or gray.size == 0:
        raise ImageReadError(f"{name}: decoded to an empty or non-2-D array {gray.shape}")
    return np.ascontiguousarray(gray)
