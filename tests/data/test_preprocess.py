import numpy as np
import pytest
import torch

from brainxai.data.preprocess import (
    PreprocessConfig,
    contour_crop,
    crop_warning,
    denormalize,
    prepare,
    prepare_with_box,
    to_array,
    to_tensor,
)


def synthetic_head(h: int = 120, w: int = 160, box: tuple[int, int, int, int] = (30, 20, 110, 100)) -> np.ndarray:
    """A bright ellipse (the head) inside box (x0, y0, x1, y1) on a black border."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[:h, :w]
    cx, cy, rx, ry = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    img = np.zeros((h, w), np.uint8)
    img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = 180
    return img


def test_contour_crop_finds_head_box_on_black_border():
    img = synthetic_head()
    cropped, (x0, y0, x1, y1) = contour_crop(img)
    # Blur + erode/dilate may move the border by a pixel or two, never more.
    assert abs(x0 - 30) <= 2 and abs(y0 - 20) <= 2 and abs(x1 - 110) <= 2 and abs(y1 - 100) <= 2
    assert cropped.shape == (y1 - y0, x1 - x0)
    assert cropped.mean() > img.mean()  # the black border is gone


@pytest.mark.parametrize("img", [np.zeros((50, 60), np.uint8), np.full((50, 60), 3, np.uint8)])
def test_contour_crop_is_safe_without_contour(img):
    cropped, box = contour_crop(img)
    assert box == (0, 0, 60, 50)
    assert cropped is img


def test_contour_crop_ignores_tiny_specks():
    img = np.zeros((100, 100), np.uint8)
    img[10:13, 10:13] = 255  # below the minimum area: not a head
    _, box = contour_crop(img)
    assert box == (0, 0, 100, 100)


def test_prepare_resizes_to_square_and_reports_box():
    img = synthetic_head()
    cfg = PreprocessConfig(img_size=64)
    out, box = prepare_with_box(img, cfg)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert box[0] > 0 and box[1] > 0
    assert np.array_equal(prepare(img, cfg), out)
    no_crop = prepare(img, cfg.replace(crop=False))
    assert no_crop.shape == (64, 64) and not np.array_equal(no_crop, out)


def test_to_tensor_unit_and_imagenet_and_roundtrip():
    img = np.array([[0, 255], [128, 64]], np.uint8)
    unit = to_tensor(img, PreprocessConfig(img_size=8, channels=1, normalize="unit"))
    assert unit.shape == (1, 2, 2)
    assert torch.allclose(unit[0], torch.tensor([[0.0, 1.0], [128 / 255, 64 / 255]]))
    cfg = PreprocessConfig(img_size=8, channels=3, normalize="imagenet")
    x = to_tensor(np.stack([img, img]), cfg)
    assert x.shape == (2, 3, 2, 2)
    # Channel 0 of pixel (0, 1) is (1 - 0.485) / 0.229.
    assert x[0, 0, 0, 1].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)
    assert np.array_equal(denormalize(x, cfg)[0], img)


def test_to_tensor_float_input_same_result_and_left_untouched():
    # torch.from_numpy shares memory with the array: a float32 input must not be scaled in place.
    img = np.array([[0, 255], [128, 64]], np.uint8)
    as_float = img.astype(np.float32)
    for cfg in (PreprocessConfig(img_size=8, channels=1, normalize="unit"), PreprocessConfig(img_size=8)):
        assert torch.equal(to_tensor(as_float, cfg), to_tensor(img, cfg))
        assert torch.equal(to_tensor(as_float, cfg), to_tensor(img, cfg))  # a second call sees the same array
        assert np.array_equal(as_float, img.astype(np.float32))


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError):
        PreprocessConfig(channels=2)
    with pytest.raises(ValueError):
        PreprocessConfig(normalize="zscore")  # type: ignore[arg-type]
    cfg = PreprocessConfig(img_size=96, channels=1, normalize="unit", crop=False)
    assert PreprocessConfig.from_dict(cfg.to_dict() | {"unknown": 1}) == cfg


def test_failed_crop_is_retried_at_the_fallback_threshold(dark_scan):
    _, patch = contour_crop(dark_scan, fallback_threshold=None)
    assert (patch[2] - patch[0]) * (patch[3] - patch[1]) < 0.05 * dark_scan.size  # the patch, not the head
    cropped, box = contour_crop(dark_scan)
    assert all(abs(a - b) <= 2 for a, b in zip(box, (10, 10, 150, 110), strict=True))  # the head's box
    assert cropped.shape == (box[3] - box[1], box[2] - box[0])
    assert crop_warning(box, dark_scan.shape) is None
    # A crop that did not fail is never retried: the head of synthetic_head is above both thresholds.
    img = synthetic_head()
    assert contour_crop(img)[1] == contour_crop(img, fallback_threshold=None)[1]


def test_crop_warning_flags_a_crop_that_kept_a_bright_patch_only(failed_crop_scan):
    img = failed_crop_scan
    _, box = contour_crop(img)
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.05 * img.size  # the patch, even at the fallback
    warning = crop_warning(box, img.shape)
    assert warning is not None and "kept only 4% of the image" in warning and "unreliable" in warning


def test_crop_warning_is_silent_for_a_normal_crop_and_at_the_limit():
    img = synthetic_head()
    _, box = contour_crop(img)
    assert crop_warning(box, img.shape) is None
    assert crop_warning((0, 0, 20, 10), (10, 100)) is None  # exactly 20% of the image
    assert crop_warning((0, 0, 19, 10), (10, 100)) is not None


@pytest.mark.parametrize(
    "name", ["Testing/glioma/Te-gl_0214.jpg", "Testing/meningioma/Te-me_0011.jpg", "Testing/notumor/Te-no_0038.jpg"]
)
def test_real_failed_crops_are_recovered(mri_root, name):
    # Three dark Kaggle scans on which threshold 45 keeps a sinus or a patch of cortex (3-11% of the
    # image; the tumour of Te-me_0011 lies outside it); the fallback keeps the head (75-86%).
    from brainxai.io import read_raster

    img = read_raster(mri_root / name)
    h, w = img.shape
    x0, y0, x1, y1 = contour_crop(img, fallback_threshold=None)[1]
    assert (x1 - x0) * (y1 - y0) < 0.12 * h * w
    x0, y0, x1, y1 = contour_crop(img)[1]
    assert (x1 - x0) * (y1 - y0) > 0.7 * h * w


def _reference_tensor(images: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """The torch normalisation to_tensor used before it was written in NumPy (kept as the reference)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0)
    x = x.unsqueeze(0 if images.ndim == 2 else 1)
    if cfg.channels == 3:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    if cfg.normalize == "imagenet":
        shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        if cfg.channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114])
            mean, std = (weights * mean).sum().reshape(1), (weights * std).sum().reshape(1)
        x = (x - mean.reshape(shape)) / std.reshape(shape)
    return x.contiguous()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("normalize", ["unit", "imagenet"])
def test_to_array_is_bit_identical_to_the_torch_normalisation(channels: int, normalize: str) -> None:
    # NumPy only, so a segmenter served by ONNX Runtime can prepare its input in a worker thread.
    rng = np.random.default_rng(0)
    cfg = PreprocessConfig(img_size=16, channels=channels, normalize=normalize)
    for images in (
        rng.integers(0, 256, (16, 16), dtype=np.uint8),
        rng.integers(0, 256, (4, 16, 16), dtype=np.uint8),
        rng.uniform(0, 255, (2, 16, 16)).astype(np.float32),
        rng.uniform(0, 255, (16, 16)),
    ):
        ours = to_array(images, cfg)
        assert isinstance(ours, np.ndarray) and ours.dtype == np.float32 and ours.flags.c_contiguous
        assert torch.equal(torch.from_numpy(ours), _reference_tensor(images, cfg))
        assert torch.equal(to_tensor(images, cfg), _reference_tensor(images, cfg))
