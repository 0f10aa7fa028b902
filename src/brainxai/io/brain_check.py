"""A plausibility guard: is a decoded image a brain MRI/CT slice at all?"""

from __future__ import annotations

import cv2
import numpy as np

from brainxai.io.raster import ImageReadError


class NotABrainScanError(ImageReadError):
    """The file decodes as an image, but the image does not look like a brain scan."""


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
