"""Input harmonisation: every scan re-exported the way the training set was (issue 21)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from brainxai.data.preprocess import HARMONIZE, PreprocessConfig, contour_crop, harmonize, prepare, prepare_with_box


def _head(size: int) -> np.ndarray:
    """A bright ellipse ("head") off-centre on a dark background, with some texture."""
    img = np.zeros((size, size), np.uint8)
    cv2.ellipse(img, (size // 2 + size // 10, size // 2), (size // 3, size // 4), 0, 0, 360, 160, -1)
    rng = np.random.default_rng(0)
    return np.clip(img.astype(int) + rng.integers(-10, 10, img.shape) * (img > 0), 0, 255).astype(np.uint8)


def test_the_preset_re_exports_at_its_size_and_quality():
    side, quality = HARMONIZE["kaggle-224-jpeg75"]
    image = _head(512)
    out = harmonize(image, "kaggle-224-jpeg75")
    assert out.shape == (side, side) and out.dtype == np.uint8
    ok, buf = cv2.imencode(".jpg", cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), [1, quality])
    assert ok and np.array_equal(out, cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    # An image already in that export barely changes (a second JPEG round trip at the same quality).
    again = harmonize(out, "kaggle-224-jpeg75")
    assert np.abs(again.astype(int) - out).mean() < 0.5


def test_the_crop_box_is_given_in_the_scans_own_pixels():
    image = _head(600)
    config = PreprocessConfig(harmonize="kaggle-224-jpeg75")
    model_input, box = prepare_with_box(image, config)
    _, plain_box = contour_crop(image)
    assert model_input.shape == (224, 224)
    # The box found on the 224-px re-export, scaled back, covers the box found on the original within a
    # re-export pixel (600 / 224 = 2.7 original pixels) on each side.
    assert all(abs(a - b) <= 3 for a, b in zip(box, plain_box, strict=True))
    assert np.array_equal(prepare(image, config), model_input)


def test_configs_without_harmonisation_keep_their_old_form_and_unknown_presets_fail():
    plain = PreprocessConfig()
    assert "harmonize" not in plain.to_dict()  # old checkpoints and cache keys stay as they were
    config = PreprocessConfig(harmonize="kaggle-224-jpeg75")
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown harmonize"):
        PreprocessConfig(harmonize="png-512")
