import numpy as np

from brainxai.data.augment import (
    Compose,
    RandomAffine,
    RandomBrightnessContrast,
    RandomHorizontalFlip,
    default_augmentation,
)


def _img():
    img = np.zeros((32, 32), np.uint8)
    img[8:24, 4:12] = 200  # an off-centre block: flips and shifts move it
    return img


def test_same_seed_same_output_different_seed_differs():
    aug = default_augmentation()
    a = aug(_img(), np.random.default_rng(1))
    b = aug(_img(), np.random.default_rng(1))
    c = aug(_img(), np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (32, 32) and a.dtype == np.uint8


def test_identity_affine_and_flip():
    img = _img()
    ident = RandomAffine(max_rotation=0, max_shift=0, zoom=(1, 1))
    assert np.array_equal(ident(img, np.random.default_rng(0)), img)
    flipped = RandomHorizontalFlip(p=1.0)(img, np.random.default_rng(0))
    assert np.array_equal(flipped, img[:, ::-1])
    assert RandomHorizontalFlip(p=0.0)(img, np.random.default_rng(0)) is img


def test_brightness_contrast_bounds():
    img = np.full((4, 4), 100, np.uint8)
    out = RandomBrightnessContrast(brightness=0.1, contrast=0.0)(img, np.random.default_rng(0))
    shift = int(out[0, 0]) - 100
    assert abs(shift) <= 26 and (out == out[0, 0]).all()


def test_flip_off_by_default():
    assert not any(isinstance(t, RandomHorizontalFlip) for t in default_augmentation().transforms)
    assert any(isinstance(t, RandomHorizontalFlip) for t in default_augmentation(hflip=True).transforms)
    assert isinstance(default_augmentation(), Compose)
