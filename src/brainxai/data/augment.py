"""Seeded training augmentation on prepared ``uint8`` images, optionally with a lesion mask.

Each transform is a small callable ``(image, rng) -> image``; :class:`Compose` chains them. The
random generator is passed in, never global, so the same seed gives the same augmentation.

Every transform also has ``apply_pair(image, mask, rng) -> (image, mask)``: geometric transforms move
the mask exactly as the image (same random draws, nearest-neighbour sampling), intensity transforms
leave it alone. ``transform(image, rng)`` and ``transform.apply_pair(image, mask, rng)[0]`` give the
same image for the same generator state.

Presets (:func:`augmentation`): ``none``; ``default`` (small affine, brightness/contrast); ``mr``
(MR-specific: random crop/scale, bias field, gamma, ghosting, motion, blur, resolution loss, Rician
noise and JPEG re-encoding at a random quality, so that neither the contour crop's framing nor the
224-px JPEG compression of the training set can serve as a cue); ``mr-histogram`` (``mr`` plus a random
monotone remapping of the head's grey levels, :class:`RandomHistogramShift`, so that a source's grey-level
distribution cannot serve as one either).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
#: Names accepted by :func:`augmentation` (``brainxai train --augment``).
AUGMENT_PRESETS = ("none", "default", "mr", "mr-histogram")


def _warp(image: np.ndarray, m: np.ndarray, nearest: bool = False) -> np.ndarray:
    h, w = image.shape
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _mask_op(mask: np.ndarray | None, op: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """Applies a geometric operation to a bool mask through uint8 (what OpenCV accepts)."""
    return None if mask is None else op(mask.astype(np.uint8)).astype(bool)


class _Geometric:
    """Moves pixels: ``apply_pair`` moves the mask with them; ``__call__`` is the image half of it."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply_pair(image, None, rng)[0]

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


class _Intensity:
    """Changes grey values only, with probability ``p``: the mask passes through unchanged."""

    p: float = 1.0

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        return self._apply(image, rng)

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return self(image, rng), mask

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RandomAffine(_Geometric):
    """Small rotation, shift and zoom about the image centre (black fill).

    Attributes:
        max_rotation: Degrees, uniform in ``[-max_rotation, max_rotation]``.
        max_shift: Fraction of the side, per axis.
        zoom: ``(min, max)`` scale factor.
    """

    max_rotation: float = 10.0
    max_shift: float = 0.05
    zoom: tuple[float, float] = (0.9, 1.1)

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = image.shape
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        scale = rng.uniform(*self.zoom)
        tx, ty = rng.uniform(-self.max_shift, self.max_shift, size=2) * (w, h)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (tx, ty)
        return _warp(image, m), _mask_op(mask, lambda k: _warp(k, m, nearest=True))


@dataclass(frozen=True)
class RandomHorizontalFlip(_Geometric):
    """Mirror left-right with probability ``p``. Off by default in training: it erases hemisphere cues."""

    p: float = 0.5

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if rng.random() >= self.p:
            return image, mask
        return np.ascontiguousarray(image[:, ::-1]), None if mask is None else np.ascontiguousarray(mask[:, ::-1])


@dataclass(frozen=True)
class RandomCropScale(_Geometric):
    """With probability ``p``, crop a window (``scale`` of the area, aspect up to ``max_aspect``), resize it back.

    The training images are contour-cropped to the head; a random window makes the model see heads that
    fill the frame differently, so the exact framing of that crop cannot become a cue.
    """

    scale: tuple[float, float] = (0.6, 1.0)
    max_aspect: float = 1.25
    p: float = 0.5

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if rng.random() >= self.p:
            return image, mask
        h, w = image.shape
        area = rng.uniform(*self.scale)
        aspect = float(np.exp(rng.uniform(-np.log(self.max_aspect), np.log(self.max_aspect))))
        ch = int(round(min(h, h * np.sqrt(area / aspect))))
        cw = int(round(min(w, w * np.sqrt(area * aspect))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))

        def crop(a: np.ndarray, interp: int) -> np.ndarray:
            return cv2.resize(np.ascontiguousarray(a[y0 : y0 + ch, x0 : x0 + cw]), (w, h), interpolation=interp)

        # INTER_NEAREST samples half a source pixel off the centre convention INTER_LINEAR uses; _EXACT does not.
        return crop(image, cv2.INTER_LINEAR), _mask_op(mask, lambda k: crop(k, cv2.INTER_NEAREST_EXACT))


@dataclass(frozen=True)
class RandomBrightnessContrast(_Intensity):
    """``out = (x - mean) * contrast + mean + brightness``, clipped to 0..255.

    Attributes:
        brightness: Maximum absolute shift, as a fraction of 255.
        contrast: Maximum relative change of contrast.
    """

    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._apply(image, rng)  # always applied (the original transform had no probability)

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = rng.uniform(-self.brightness, self.brightness) * 255.0
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        x = image.astype(np.float32)
        mean = float(x.mean())
        return np.clip((x - mean) * c + mean + b, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RandomGamma(_Intensity):
    """``out = 255 (x / 255) ** g``, ``log g`` uniform in ``[-log_gamma, log_gamma]`` (another scanner's contrast)."""

    log_gamma: float = 0.3
    p: float = 0.3

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = float(np.exp(rng.uniform(-self.log_gamma, self.log_gamma)))
        return _to_uint8(255.0 * (image.astype(np.float32) / 255.0) ** g)


@dataclass(frozen=True)
class RandomHistogramShift(_Intensity):
    """Remaps the head's grey levels through a random monotone curve: another source's grey-level distribution.

    ``points`` control points evenly spaced over the head's grey range (pixels above ``background``) keep their
    order: the two ends stay, the inner ones move to sorted uniform draws within the range (the idea of MONAI's
    ``RandHistogramShift``). Every pixel keeps its rank among the head's pixels, so anatomy and lesion stay
    where and what they are; the background is untouched. Why: the shipped classifier's glioma decision
    follows figshare's grey levels (``experiments/source_look``).
    """

    points: int = 6
    background: int = 10
    p: float = 0.5

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        head = image > self.background
        if not head.any():
            return image
        lo, hi = float(image[head].min()), float(image[head].max())
        if hi <= lo:
            return image
        xp = np.linspace(lo, hi, self.points)
        yp = np.concatenate([[lo], np.sort(rng.uniform(lo, hi, self.points - 2)), [hi]])
        lut = np.arange(256, dtype=np.float64)
        above = lut > self.background
        lut[above] = np.interp(lut[above], xp, yp)
        return _to_uint8(lut)[image]


@dataclass(frozen=True)
class RandomBiasField(_Intensity):
    """Multiplies by ``exp(P(x, y))``, ``P`` a random polynomial of degree ``order`` (coefficients in ±``coefficient``).

    The slowly varying intensity of receive-coil inhomogeneity, as TorchIO's ``RandomBiasField`` models it.
    """

    coefficient: float = 0.15
    order: int = 3
    p: float = 0.3

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape
        # The field is smooth: evaluate it on a coarse grid and interpolate (13.9 -> ~1 ms at 224 px).
        gh, gw = min(h, 32), min(w, 32)
        yy, xx = np.meshgrid(
            np.linspace(-1, 1, gh, dtype=np.float32), np.linspace(-1, 1, gw, dtype=np.float32), indexing="ij"
        )
        log_field = np.zeros((gh, gw), np.float32)
        for i in range(self.order + 1):
            for j in range(self.order + 1 - i):
                log_field += rng.uniform(-self.coefficient, self.coefficient) * xx**i * yy**j
        field = cv2.resize(np.exp(log_field), (w, h), interpolation=cv2.INTER_LINEAR)
        return _to_uint8(image.astype(np.float32) * field)


@dataclass(frozen=True)
class RandomNoise(_Intensity):
    """Rician noise (magnitude of a signal with complex Gaussian noise, as in MR), sigma in ``std`` x 255."""

    std: tuple[float, float] = (0.0, 0.04)
    p: float = 0.3

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sigma = rng.uniform(*self.std) * 255.0
        real = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
        imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
        return _to_uint8(np.hypot(real, imag))


@dataclass(frozen=True)
class RandomBlur(_Intensity):
    """Gaussian blur with sigma (pixels) uniform in ``sigma``."""

    sigma: tuple[float, float] = (0.3, 1.2)
    p: float = 0.2

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = rng.uniform(*self.sigma)
        return cv2.GaussianBlur(image, (0, 0), sigmaX=s, sigmaY=s)


@dataclass(frozen=True)
class RandomResolution(_Intensity):
    """Down- then up-sampling by a factor uniform in ``scale`` (a coarser acquisition or a small export)."""

    scale: tuple[float, float] = (0.35, 0.9)
    p: float = 0.2

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape
        f = rng.uniform(*self.scale)
        small = cv2.resize(image, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class RandomJPEG(_Intensity):
    """Re-encodes as JPEG at a quality uniform in ``quality``, at ``size`` px (the training set's 224-px JPEGs).

    The model was found to key on 224-px JPEG compression (external slices re-encoded that way were
    recognised better); random qualities make the compression a nuisance, not a cue.
    """

    quality: tuple[int, int] = (30, 95)
    size: int | None = 224
    p: float = 0.5

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        q = int(rng.integers(self.quality[0], self.quality[1] + 1))
        h, w = image.shape
        x = (
            image
            if self.size is None or (h, w) == (self.size, self.size)
            else cv2.resize(image, (self.size, self.size))
        )
        ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:  # cannot happen for a uint8 2-D array; keep the image rather than fail a training run
            return image
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        if out is None:
            return image
        return np.asarray(out if out.shape == (h, w) else cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA))


def _kspace_magnitude(k: np.ndarray) -> np.ndarray:
    return _to_uint8(np.abs(np.fft.ifft2(k)))


@dataclass(frozen=True)
class RandomGhosting(_Intensity):
    """Scales every ``n``-th k-space line along one axis by ``1 - intensity`` (``n`` drawn from ``num_ghosts``).

    In image space that subtracts ``intensity / n`` times the sum of the image's copies shifted by
    multiples of ``side / n``: ``n`` faint ghosts along the phase-encoding axis, as from periodic motion.
    """

    num_ghosts: tuple[int, int] = (2, 6)
    intensity: tuple[float, float] = (0.3, 0.8)
    p: float = 0.1

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = int(rng.integers(self.num_ghosts[0], self.num_ghosts[1] + 1))
        strength = rng.uniform(*self.intensity)
        axis = int(rng.integers(0, 2))
        k = np.fft.fft2(image.astype(np.float64))
        lines = np.arange(image.shape[axis]) % n == 0
        scale = np.where(lines, 1.0 - strength, 1.0)
        k *= scale[:, None] if axis == 0 else scale[None, :]
        return _kspace_magnitude(k)


@dataclass(frozen=True)
class RandomMotion(_Intensity):
    """Rigid motion during the scan: k-space lines after a random time come from a moved copy of the image."""

    max_shift: float = 4.0  # pixels
    max_rotation: float = 3.0  # degrees
    p: float = 0.1

    def _apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        tx, ty = rng.uniform(-self.max_shift, self.max_shift, size=2)
        start = int(rng.integers(h // 8, h - h // 8))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[:, 2] += (tx, ty)
        k = np.fft.fftshift(np.fft.fft2(image.astype(np.float64)))
        moved = np.fft.fftshift(np.fft.fft2(_warp(image, m).astype(np.float64)))
        k[start:] = moved[start:]  # rows acquired after the movement (phase encoding top to bottom)
        return _kspace_magnitude(np.fft.ifftshift(k))


@dataclass(frozen=True)
class Compose:
    """Applies transforms in order, sharing one generator."""

    transforms: Sequence[Transform]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            image = t(image, rng)
        return image

    def apply_pair(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Image and mask through every transform; raises for a transform that cannot carry a mask."""
        for t in self.transforms:
            image, mask = apply_pair(t, image, mask, rng)
        return image, mask


def apply_pair(
    transform: Transform, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """``transform`` on an image and its mask together.

    Raises:
        TypeError: The transform has no ``apply_pair`` (it might move pixels without moving the mask).
    """
    pair = getattr(transform, "apply_pair", None)
    if pair is None:
        raise TypeError(f"{type(transform).__name__} cannot transform a mask with its image (no apply_pair)")
    result: tuple[np.ndarray, np.ndarray | None] = pair(image, mask, rng)
    return result


def default_augmentation(hflip: bool = False) -> Compose:
    """The training augmentation: small rotation/shift/zoom and brightness/contrast; flip optional."""
    transforms: list[Transform] = [RandomAffine(), RandomBrightnessContrast()]
    if hflip:
        transforms.append(RandomHorizontalFlip())
    return Compose(transforms)


def mr_augmentation(hflip: bool = False, histogram: bool = False) -> Compose:
    """The ``mr`` preset: geometry (crop/scale, affine), scanner intensity, acquisition artefacts, then export.

    Order: geometry first (it moves the mask), then what the scanner does to intensities (bias field,
    gamma, with ``histogram`` a random grey-level remapping (the ``mr-histogram`` preset), contrast), then
    artefacts of the acquisition (ghosting, motion, blur, resolution, noise), and JPEG last, as an export would.
    """
    transforms: list[Transform] = [
        RandomCropScale(),
        RandomAffine(max_rotation=15.0, max_shift=0.08, zoom=(0.8, 1.15)),
    ]
    if hflip:
        transforms.append(RandomHorizontalFlip())
    transforms += [RandomBiasField(), RandomGamma()]
    if histogram:
        transforms.append(RandomHistogramShift())
    transforms += [
        RandomBrightnessContrast(),
        RandomGhosting(),
        RandomMotion(),
        RandomBlur(),
        RandomResolution(),
        RandomNoise(),
        RandomJPEG(),
    ]
    return Compose(transforms)


def augmentation(preset: str, hflip: bool = False) -> Compose | None:
    """The named preset (:data:`AUGMENT_PRESETS`); ``none`` gives None.

    Raises:
        ValueError: Unknown preset.
    """
    if preset == "none":
        return None
    if preset == "default":
        return default_augmentation(hflip)
    if preset in ("mr", "mr-histogram"):
        return mr_augmentation(hflip, histogram=preset == "mr-histogram")
    raise ValueError(f"unknown augmentation preset {preset!r}; use one of {', '.join(AUGMENT_PRESETS)}")
