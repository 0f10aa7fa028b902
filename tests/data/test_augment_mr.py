"""The MR augmentation preset and the joint (image, mask) geometric transforms."""

import cv2
import numpy as np
import pytest

from brainxai.data.augment import (
    AUGMENT_PRESETS,
    Compose,
    RandomAffine,
    RandomBiasField,
    RandomBlur,
    RandomBrightnessContrast,
    RandomCropScale,
    RandomGamma,
    RandomGhosting,
    RandomHistogramShift,
    RandomHorizontalFlip,
    RandomJPEG,
    RandomMotion,
    RandomNoise,
    RandomResolution,
    apply_pair,
    augmentation,
    mr_augmentation,
)


def _head(size=96):
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size), np.uint8)
    img[((xx - size / 2) / (size * 0.4)) ** 2 + ((yy - size / 2) / (size * 0.45)) ** 2 <= 1] = 90
    img[30:40, 55:70] = 220
    return img


def _planted(size=96):
    mask = np.zeros((size, size), bool)
    mask[20:44, 50:70] = True  # an off-centre square: every geometric transform moves it
    return mask


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_presets_are_named_and_mr_is_seeded():
    assert AUGMENT_PRESETS == ("none", "default", "mr", "mr-histogram")
    assert augmentation("none") is None
    with pytest.raises(ValueError, match="mr"):
        augmentation("strong")
    aug = augmentation("mr")
    a = [aug(_head(), np.random.default_rng(s)) for s in (1, 1, 2)]
    assert np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])
    assert a[0].dtype == np.uint8 and a[0].shape == (96, 96)


@pytest.mark.parametrize(
    "transform",
    [
        RandomAffine(max_rotation=20, max_shift=0.1, zoom=(0.8, 1.2)),
        RandomHorizontalFlip(p=1.0),
        RandomCropScale(scale=(0.5, 0.8), p=1.0),
        mr_augmentation(hflip=True),
    ],
)
def test_planted_square_moves_in_the_mask_exactly_as_in_the_image(transform):
    mask = _planted()
    image = mask.astype(np.uint8) * 255  # the image IS the square: where it lands, the mask must land
    for seed in range(5):
        img_only = transform(image, np.random.default_rng(seed))
        img, moved = apply_pair(transform, image, mask, np.random.default_rng(seed))
        assert np.array_equal(img, img_only)  # the mask changes no random draw
        if isinstance(transform, Compose):
            continue  # intensity transforms blur the square's image; its geometry is checked without them
        assert moved is not None and moved.dtype == bool
        assert _iou(img >= 128, moved) > 0.9
        ys, xs = np.nonzero(moved)
        yi, xi = np.nonzero(img >= 128)
        assert abs(ys.mean() - yi.mean()) < 0.75 and abs(xs.mean() - xi.mean()) < 0.75


def test_mr_preset_geometry_carries_the_mask():
    # The geometric part of the preset alone, with every step on: the mask lands where the square is.
    geo = Compose([RandomCropScale(p=1.0), RandomAffine(max_rotation=15.0, max_shift=0.08, zoom=(0.8, 1.15))])
    mask = _planted()
    for seed in range(5):
        img, moved = geo.apply_pair(mask.astype(np.uint8) * 255, mask, np.random.default_rng(seed))
        assert _iou(img >= 128, moved) > 0.85


def test_intensity_transforms_leave_the_mask_alone_and_flip_is_exact():
    mask = _planted()
    img, same = RandomGamma(p=1.0).apply_pair(_head(), mask, np.random.default_rng(0))
    assert same is mask
    img, flipped = RandomHorizontalFlip(p=1.0).apply_pair(_head(), mask, np.random.default_rng(0))
    assert np.array_equal(flipped, mask[:, ::-1]) and np.array_equal(img, _head()[:, ::-1])


def test_histogram_shift_remaps_the_head_monotonically_and_keeps_the_background():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64), np.uint8)
    img[8:56, 8:56] = rng.integers(20, 240, (48, 48))  # a "head" with every grey level from 20 to 239
    head = img > 10
    shift = RandomHistogramShift(p=1.0)
    outs = [shift(img, np.random.default_rng(s)) for s in range(5)]
    assert np.array_equal(outs[0], shift(img, np.random.default_rng(0)))  # seeded
    for out in outs:
        assert np.array_equal(out[~head], img[~head])  # background untouched
        # Monotone: a brighter head pixel never ends darker; the head's extremes stay.
        order = np.argsort(img[head], kind="stable")
        assert np.all(np.diff(out[head][order].astype(int)) >= 0)
        assert out[head].min() == img[head].min() and out[head].max() == img[head].max()
        assert (out[head] > 10).all()
    # It does change the distribution: the median grey level moves by several levels across draws.
    medians = [float(np.median(o[head])) for o in outs]
    assert max(medians) - min(medians) > 10
    # The mask passes through; p=0 is the identity.
    mask = head.copy()
    assert shift.apply_pair(img, mask, np.random.default_rng(1))[1] is mask
    assert np.array_equal(RandomHistogramShift(p=0.0)(img, np.random.default_rng(1)), img)


def test_mr_histogram_preset_is_mr_with_the_shift_after_gamma():
    names = [type(t).__name__ for t in augmentation("mr-histogram").transforms]
    plain = [type(t).__name__ for t in augmentation("mr").transforms]
    assert names == [
        *plain[: plain.index("RandomGamma") + 1],
        "RandomHistogramShift",
        *plain[plain.index("RandomGamma") + 1 :],
    ]


def test_gamma_is_the_power_law_of_the_drawn_exponent():
    img = np.full((8, 8), 100, np.uint8)
    out = RandomGamma(log_gamma=0.3, p=1.0)(img, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    rng.random()  # the probability draw
    g = np.exp(rng.uniform(-0.3, 0.3))
    assert out[0, 0] == round(255 * (100 / 255) ** g)
    # gamma > 1 darkens mid-grey, < 1 brightens it
    assert (g > 1) == (out[0, 0] < 100)


def test_bias_field_is_smooth_multiplicative_and_bounded():
    img = np.full((64, 64), 128, np.uint8)
    out = RandomBiasField(coefficient=0.15, order=3, p=1.0)(img, np.random.default_rng(5)).astype(float)
    log_ratio = np.log(np.maximum(out, 1) / 128)
    assert np.ptp(log_ratio) > 0.02  # it does change the intensities
    assert np.abs(log_ratio).max() <= 0.15 * 10 + 0.01  # 10 terms of |coefficient| <= 0.15, |x^i y^j| <= 1
    # smooth: the 2nd differences are tiny compared with the range
    assert np.abs(np.diff(log_ratio, 2, axis=1)).max() < 0.05 * np.ptp(log_ratio) + 0.01


def test_rician_noise_on_black_has_the_rayleigh_mean():
    out = RandomNoise(std=(0.04, 0.04), p=1.0)(np.zeros((256, 256), np.uint8), np.random.default_rng(0))
    sigma = 0.04 * 255
    assert out.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.03)


def test_blur_and_resolution_loss_remove_fine_detail():
    checker = ((np.indices((64, 64)).sum(0) % 2) * 200).astype(np.uint8)

    def fine(x):
        return cv2.Laplacian(x.astype(np.float32), cv2.CV_32F).var()

    assert fine(RandomBlur(sigma=(1.0, 1.0), p=1.0)(checker, np.random.default_rng(0))) < 0.05 * fine(checker)
    assert fine(RandomResolution(scale=(0.5, 0.5), p=1.0)(checker, np.random.default_rng(0))) < 0.05 * fine(checker)


def test_ghosting_puts_ghosts_at_the_k_space_comb_offset():
    img = np.zeros((64, 64), np.uint8)
    img[8:16, 24:40] = 200
    n, strength = 4, 0.5
    out = RandomGhosting(num_ghosts=(n, n), intensity=(strength, strength), p=1.0)(img, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    rng.random(), rng.integers(n, n + 1), rng.uniform(strength, strength)
    axis = int(rng.integers(0, 2))
    # Scaling every n-th k-space line by (1 - s) subtracts s/n x the copies shifted by 64/n = 16 px.
    ghost = out[24:32, 24:40] if axis == 0 else out[8:16, 40:56]
    assert ghost.mean() == pytest.approx(200 * strength / n, abs=1.0)
    assert out[8:16, 24:40].mean() == pytest.approx(200 * (1 - strength / n), abs=1.0)
    elsewhere = out.astype(float).copy()
    for k in range(n):  # the ghost positions along the axis
        if axis == 0:
            elsewhere[(8 + 16 * k) % 64 : (16 + 16 * k) % 64 or 64, 24:40] = 0
        else:
            elsewhere[8:16, (24 + 16 * k) % 64 : (40 + 16 * k) % 64 or 64] = 0
    assert elsewhere.max() <= 1


def test_motion_without_movement_is_the_identity_and_with_it_changes_the_image():
    img = _head()
    still = RandomMotion(max_shift=0.0, max_rotation=0.0, p=1.0)(img, np.random.default_rng(0))
    assert np.abs(still.astype(int) - img).max() <= 1
    moved = RandomMotion(max_shift=6.0, max_rotation=5.0, p=1.0)(img, np.random.default_rng(0))
    assert np.abs(moved.astype(int) - img).mean() > 0.5


def test_jpeg_reencodes_at_the_drawn_quality():
    img = _head(224)
    out = RandomJPEG(quality=(40, 40), p=1.0)(img, np.random.default_rng(0))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok and np.array_equal(out, cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))

    def err(q):
        return np.abs(RandomJPEG(quality=(q, q), p=1.0)(img, np.random.default_rng(0)).astype(int) - img).mean()

    assert err(20) > err(95)


def test_probability_zero_is_the_identity_and_brightness_contrast_keeps_its_draws():
    img = _head()
    for t in (RandomGamma(p=0.0), RandomNoise(p=0.0), RandomJPEG(p=0.0), RandomCropScale(p=0.0)):
        assert t(img, np.random.default_rng(0)) is img
    # RandomBrightnessContrast is always applied and draws exactly brightness, then contrast (as before presets)
    out = RandomBrightnessContrast()(img, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    b, c = rng.uniform(-0.1, 0.1) * 255, 1 + rng.uniform(-0.1, 0.1)
    x = img.astype(np.float32)
    assert np.array_equal(out, np.clip((x - x.mean()) * c + x.mean() + b, 0, 255).astype(np.uint8))


def test_a_transform_without_apply_pair_is_refused_with_a_mask():
    with pytest.raises(TypeError, match="apply_pair"):
        Compose([lambda im, rng: im]).apply_pair(_head(), _planted(), np.random.default_rng(0))
