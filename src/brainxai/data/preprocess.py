"""Deterministic preprocessing: decode, contour crop, resize, normalise.

Every model is fed through one :class:`PreprocessConfig`. The config travels inside each checkpoint,
so a model is always fed at inference exactly as it was during training.

Images are handled as 2-D ``uint8`` grayscale arrays until the very last step. MRI slices carry
grayscale content (the dataset's RGB files have R == G == B), so keeping one channel halves the
cache and loses nothing; RGB models receive the channel repeated three times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import cv2
import numpy as np
import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Normalisation = Literal["imagenet", "unit"]

#: Input harmonisation presets: name -> (side of the square re-export in pixels, JPEG quality).
#: ``kaggle-224-jpeg75`` is the shared Kaggle copy's export (224 x 224, JPEG quality 75, read from its
#: quantisation tables).
HARMONIZE: dict[str, tuple[int, int]] = {"kaggle-224-jpeg75": (224, 75)}

#: Intensity windows (:func:`window_intensity`): ``percentile`` maps the slice's 0.5th percentile to 0 and the
#: 99.5th percentile of its non-zero pixels to 255, as the NIfTI reader windows a volume.
WINDOWS = ("percentile",)


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw scans become model input.

    Attributes:
        img_size: Side of the square model input, in pixels.
        channels: 3 (grayscale repeated, for ImageNet-style models) or 1.
        normalize: ``"imagenet"`` (ImageNet mean/std) or ``"unit"`` (values in [0, 1]).
        crop: Crop to the head with :func:`contour_crop` before resizing.
        harmonize: First re-encode the whole slice the way the training set was exported (a key of
            :data:`HARMONIZE`, e.g. ``"kaggle-224-jpeg75"``), or None. A model trained on one export
            can key on its resolution and compression; feeding it every scan in that export removes
            the difference (measured in ``benchmarks/candidate/``).
        window: First window the slice's intensities (a key of :data:`WINDOWS`), or None. The same window
            for every input, at training and inference, so a JPEG export and a NIfTI read of one slice
            reach the network alike (``benchmarks/segmentation/robustness.md``).
    """

    img_size: int = 224
    channels: int = 3
    normalize: Normalisation = "imagenet"
    crop: bool = True
    harmonize: str | None = None
    window: str | None = None

    def __post_init__(self) -> None:
        if self.img_size < 8:
            raise ValueError(f"img_size must be at least 8, got {self.img_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.normalize not in ("imagenet", "unit"):
            raise ValueError(f"normalize must be 'imagenet' or 'unit', got {self.normalize!r}")
        if self.harmonize is not None and self.harmonize not in HARMONIZE:
            raise ValueError(f"unknown harmonize {self.harmonize!r}; use one of {', '.join(HARMONIZE)} or None")
        if self.window is not None and self.window not in WINDOWS:
            raise ValueError(f"unknown window {self.window!r}; use one of {', '.join(WINDOWS)} or None")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("harmonize", "window"):
            if d[key] is None:  # configs without it keep their old form (checkpoints, cache keys)
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> PreprocessConfig:
        return PreprocessConfig.from_dict({**self.to_dict(), **changes})


#: A contour crop covering less than this share of the image has failed: the crop is retried at
#: :data:`FALLBACK_THRESHOLD`, and if that fails too, :func:`crop_warning` reports it.
SMALL_CROP_FRACTION = 0.2
#: Threshold of the retry: low enough for the dark scans on which threshold 45 keeps only a bright patch.
FALLBACK_THRESHOLD = 20
#: Bumped whenever the crop's output changes for some image, so that cached crops are rebuilt.
CROP_VERSION = 2


def contour_crop(
    image: np.ndarray,
    threshold: int = 45,
    blur: int = 5,
    iterations: int = 2,
    min_area_fraction: float = 0.01,
    fallback_threshold: int | None = FALLBACK_THRESHOLD,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crops a grayscale slice to the extreme points of its largest external contour.

    Grayscale, Gaussian blur, binary threshold, erode then dilate (removes speckle), take the
    largest external contour and crop to its extreme left/right/top/bottom points.

    On dark scans part of the head falls below ``threshold`` and the largest blob can be a sinus, the
    orbits or a patch of cortex. A box covering less than :data:`SMALL_CROP_FRACTION` of the image is
    therefore retried at ``fallback_threshold`` and the larger box kept. On the Kaggle brain-tumour
    set that retry concerns 70 of 7,019 images (1.0%): each of the 20 inspected at threshold 45 had cut
    off brain, the 20 smallest show the whole head at 20, and 1 of the 70 stays under 20%.

    Args:
        image: 2-D ``uint8`` array.
        threshold: Intensity above which a pixel counts as head.
        blur: Gaussian kernel size (odd).
        iterations: Erosion and dilation iterations.
        min_area_fraction: A contour smaller than this share of the image is ignored.
        fallback_threshold: Threshold of the retry after a failed crop (``None``: no retry).

    Returns:
        The cropped image and its box ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive. When no usable
        contour is found, the image is returned unchanged with the full-image box.
    """
    if image.ndim != 2:
        raise ValueError(f"contour_crop expects a 2-D grayscale array, got shape {image.shape}")
    h, w = image.shape
    box = _blob_box(image, threshold, blur, iterations, min_area_fraction)
    failed = crop_fraction(box, (h, w)) < SMALL_CROP_FRACTION
    if failed and fallback_threshold is not None and fallback_threshold < threshold:
        retry = _blob_box(image, fallback_threshold, blur, iterations, min_area_fraction)
        if retry != (0, 0, w, h) and crop_fraction(retry, (h, w)) > crop_fraction(box, (h, w)):
            box = retry
    if box == (0, 0, w, h):
        return image, box
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1], box


# An empty kernel selects OpenCV's default 3x3 rectangle, as None does (which the cv2 stubs do not accept).
_DEFAULT_KERNEL = np.empty((0, 0), np.uint8)


def _blob_box(
    image: np.ndarray, threshold: int, blur: int, iterations: int, min_area_fraction: float
) -> tuple[int, int, int, int]:
    """Box of the largest blob above ``threshold``, or the full image when there is no usable one."""
    h, w = image.shape
    full = (0, 0, w, h)
    smoothed = cv2.GaussianBlur(image, (blur, blur), 0)
    _, mask = cv2.threshold(smoothed, threshold, 255, cv2.THRESH_BINARY)
    mask = cv2.erode(mask, _DEFAULT_KERNEL, iterations=iterations)
    mask = cv2.dilate(mask, _DEFAULT_KERNEL, iterations=iterations)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return full
    largest = max(contours, key=cv2.contourArea)
    if cv2.contourArea(largest) < min_area_fraction * h * w:
        return full
    pts = largest.reshape(-1, 2)
    x0, y0 = int(pts[:, 0].min()), int(pts[:, 1].min())
    x1, y1 = int(pts[:, 0].max()) + 1, int(pts[:, 1].max()) + 1
    if x1 - x0 < 8 or y1 - y0 < 8:
        return full
    return (x0, y0, x1, y1)


def crop_fraction(box: tuple[int, int, int, int], shape: tuple[int, int]) -> float:
    """Share of an image of ``shape`` (height, width) that the ``(x0, y0, x1, y1)`` box covers."""
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0) / float(shape[0] * shape[1])


def crop_warning(box: tuple[int, int, int, int], shape: tuple[int, int]) -> str | None:
    """A warning when the automatic crop kept implausibly little of the image, else ``None``.

    :func:`contour_crop` retries a failed crop at a lower threshold; this reports the crops that still
    cover less than :data:`SMALL_CROP_FRACTION` of the image. The model then sees only that part, and
    nothing outside it can influence the prediction or appear in a map.

    Args:
        box: ``(x0, y0, x1, y1)`` crop box, as returned by :func:`contour_crop`.
        shape: ``(height, width)`` of the image it was taken from.
    """
    fraction = crop_fraction(box, shape)
    if fraction >= SMALL_CROP_FRACTION:
        return None
    x0, y0, x1, y1 = box
    return (
        f"The automatic head crop kept only {100 * fraction:.0f}% of the image (box x {x0}-{x1}, y {y0}-{y1} "
        "pixels), which usually means it failed on a dark scan: the model saw only that part, so the "
        "prediction and the maps ignore everything outside it. Treat this result as unreliable."
    )


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes a 2-D array to ``size`` x ``size`` (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def window_intensity(image: np.ndarray, window: str) -> np.ndarray:
    """The slice with its intensities windowed as ``window`` of :data:`WINDOWS` says (``uint8``)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; use one of {', '.join(WINDOWS)}")
    from brainxai.io.nifti import volume_to_uint8

    return volume_to_uint8(image)


def harmonize(image: np.ndarray, preset: str) -> np.ndarray:
    """The whole slice re-exported as preset ``preset`` of :data:`HARMONIZE` (square resize, JPEG round trip)."""
    side, quality = HARMONIZE[preset]
    ok, buf = cv2.imencode(".jpg", resize(image, side), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 2-D array
        raise RuntimeError("JPEG encoding failed")
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), dtype=np.uint8)


def prepare(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Applies the deterministic part of preprocessing: optional harmonisation and crop, then resize.

    Args:
        image: 2-D ``uint8`` grayscale array.
        config: Preprocessing settings.

    Returns:
        ``uint8`` array of shape ``(img_size, img_size)``; this is what the data cache stores.
    """
    return prepare_with_box(image, config)[0]


def prepare_with_box(image: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Like :func:`prepare` but also returns the crop box in original pixel coordinates."""
    h, w = image.shape
    work = window_intensity(image, config.window) if config.window else image
    work = harmonize(work, config.harmonize) if config.harmonize else work
    box = (0, 0, w, h)
    if config.crop:
        work, box = contour_crop(work)
        if config.harmonize:  # the box was found on the re-export: scale it back to the slice's pixels
            box = _scale_box(box, work_shape=HARMONIZE[config.harmonize][0], shape=(h, w))
    return resize(work, config.img_size), box


def _scale_box(box: tuple[int, int, int, int], work_shape: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box on a ``work_shape`` x ``work_shape`` re-export, in the pixels of the ``shape`` original (covering it)."""
    h, w = shape
    x0, y0, x1, y1 = box
    sx, sy = w / work_shape, h / work_shape
    return (int(x0 * sx), int(y0 * sy), min(w, int(np.ceil(x1 * sx))), min(h, int(np.ceil(y1 * sy))))


def to_array(images: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Converts prepared ``uint8`` images to a normalised float32 array (the model's input, without torch).

    NumPy only, so it may run in a worker thread (e.g. the segmenter served by ONNX Runtime beside the
    analysis), where a torch call would start a second OpenMP team (:mod:`brainxai.util.pools`).

    Args:
        images: ``(H, W)`` or ``(N, H, W)`` ``uint8`` (or float in [0, 255]) array.
        config: Preprocessing settings (channels and normalisation).

    Returns:
        ``(C, H, W)`` or ``(N, C, H, W)`` C-contiguous float32 array.
    """
    single = images.ndim == 2
    # astype copies: the caller's array is never scaled in place.
    x = np.asarray(images).astype(np.float32) / np.float32(255.0)
    x = x[None] if single else x[:, None]
    if config.channels == 3:
        x = np.broadcast_to(x, (*x.shape[:-3], 3, *x.shape[-2:]))
    if config.normalize == "imagenet":
        mean, std = _imagenet_stats(config.channels)
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        x = (x - mean.reshape(shape)) / std.reshape(shape)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_tensor(images: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    """:func:`to_array` as a torch tensor: ``(C, H, W)`` or ``(N, C, H, W)`` float32."""
    return torch.from_numpy(to_array(images, config))


def _imagenet_stats(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float32): ImageNet's, or for one channel their luminance-weighted sum."""
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    if channels == 3:
        return mean, std
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return (weights * mean).sum(keepdims=True), (weights * std).sum(keepdims=True)


def denormalize(x: torch.Tensor, config: PreprocessConfig) -> np.ndarray:
    """Inverse of :func:`to_tensor` for display: returns ``uint8`` ``(H, W)`` or ``(N, H, W)``."""
    x = x.detach().float().cpu()
    if config.normalize == "imagenet":
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        mean, std = (torch.from_numpy(v).reshape(shape) for v in _imagenet_stats(config.channels))
        x = x * std + mean
    x = x.mean(dim=-3)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
