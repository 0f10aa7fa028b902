"""The intensity window applied to every input of a model that records it (issue 22: NIfTI reads vs JPEG exports)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from brainxai.data.preprocess import PreprocessConfig, contour_crop, prepare_with_box, resize, window_intensity
from brainxai.data.seg_dataset import prepare_pair
from brainxai.io.nifti import volume_to_uint8


def _dim_head(size: int = 256) -> np.ndarray:
    """A head whose brightest pixels reach only 150 (a dim export), with texture and a few hot pixels."""
    img = np.zeros((size, size), np.uint8)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 4), 0, 0, 360, 100, -1)
    rng = np.random.default_rng(1)
    img = np.clip(img.astype(int) + rng.integers(0, 50, img.shape) * (img > 0), 0, 255).astype(np.uint8)
    img[size // 2, size // 2 : size // 2 + 3] = 255
    return img


def test_the_percentile_window_is_the_nifti_readers_and_a_second_pass_barely_moves_it() -> None:
    image = _dim_head()
    out = window_intensity(image, "percentile")
    assert np.array_equal(out, volume_to_uint8(image))
    assert out.max() == 255 and out[image > 0].mean() > 1.4 * image[image > 0].mean()  # stretched
    # What a NIfTI read gives reaches the model as the export does: windowing the windowed slice again.
    assert np.abs(window_intensity(out, "percentile").astype(int) - out).mean() < 1.0
    with pytest.raises(ValueError, match="unknown window"):
        window_intensity(image, "z-score")


def test_prepare_windows_before_cropping() -> None:
    image = _dim_head()
    out, box = prepare_with_box(image, PreprocessConfig(img_size=64, window="percentile"))
    crop, crop_box = contour_crop(volume_to_uint8(image))  # the crop is found on the windowed slice
    assert box == crop_box and np.array_equal(out, resize(crop, 64))
    _, plain_box = prepare_with_box(image, PreprocessConfig(img_size=64))
    assert max(abs(a - b) for a, b in zip(box, plain_box, strict=True)) <= 2  # the head is found alike


def test_the_segmentation_pair_windows_the_image_only() -> None:
    image = _dim_head()
    mask = np.zeros(image.shape, bool)
    mask[120:136, 120:136] = True
    config = PreprocessConfig(img_size=64, window="percentile")
    img, msk, box = prepare_pair(image, mask, config)
    expected_img, expected_box = prepare_with_box(image, config)
    x0, y0, x1, y1 = box
    assert box == expected_box and np.array_equal(img, expected_img)  # the image as the segmenter sees it
    plain_crop = mask[y0:y1, x0:x1].astype(np.uint8)
    expected_mask = cv2.resize(plain_crop, (64, 64), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert msk.sum() > 0 and abs(int(msk.sum()) - int(expected_mask.sum())) <= 8  # the mask cropped, not windowed


def test_configs_without_a_window_keep_their_old_form_and_unknown_windows_fail() -> None:
    assert "window" not in PreprocessConfig().to_dict()  # old checkpoints and cache keys stay as they were
    config = PreprocessConfig(window="percentile")
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown window"):
        PreprocessConfig(window="z-score")
