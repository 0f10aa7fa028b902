"""Seeded training augmentation on prepared ``uint8`` images.

Each transform is a small callable ``(image, rng) -> image``; :class:`Compose` chains them. The
random generator is passed in, never global, so the same seed gives the same augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class RandomAffine:
    """Small rotation, shift and zoom about the image centre (black fill).

    Attributes:
        max_rotation: Degrees, uniform in ``[-max_rotation, max_rotation]``.
        max_shift: Fraction of the side, per axis.
        zoom: ``(min, max)`` scale factor.
    """

    max_rotation: float = 10.0
    max_shift: float = 0.05
    zoom: tuple[float, float] = (0.9, 1.1)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        scale = rng.uniform(*self.zoom)
        tx, ty = rng.uniform(-self.max_shift, self.max_shift, size=2) * (w, h)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (tx, ty)
        return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class RandomBrightnessContrast:
    """``out = (x - mean) * contrast + mean + brightness``, clipped to 0..255.

    Attributes:
        brightness: Maximum absolute shift, as a fraction of 255.
        contrast: Maximum relative change of contrast.
    """

    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = rng.uniform(-self.brightness, self.brightness) * 255.0
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        x = image.astype(np.float32)
        mean = float(x.mean())
        return np.clip((x - mean) * c + mean + b, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``. Off by default in training: it erases hemisphere cues."""

    p: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1]) if rng.random() < self.p else image


@dataclass(frozen=True)
class Compose:
    """Applies transforms in order, sharing one generator."""

    transforms: Sequence[Transform]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            image = t(image, rng)
        return image


def default_augmentation(hflip: bool = False) -> Compose:
    """The training augmentation: small rotation/shift/zoom and brightness/contrast; flip optional."""
    transforms: list[Transform] = [RandomAffine(), RandomBrightnessContrast()]
    if hflip:
        transforms.append(RandomHorizontalFlip())
    return Compose(transforms)
