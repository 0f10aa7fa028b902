"""Each quality metric on hand-made maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.explain.quality import (
    auc,
    blurred_baseline,
    box_mask,
    box_to_input,
    centre_map,
    distance_to_box,
    energy_in_box,
    iou_with_box,
    mirrored_box,
    occlusion_drop,
    perturbation_auc,
    perturbation_curve,
    pointing_game,
    rank_correlation,
    region_box_overlap,
    relevance_order,
    sharpness,
)

BOX = (20, 30, 40, 50)  # x0, y0, x1 (exclusive), y1 (exclusive)


def peak_at(x: int, y: int, shape=(100, 100)) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[y, x] = 1.0
    return m


def test_box_mask_uses_exclusive_ends() -> None:
    m = box_mask((100, 100), BOX)
    assert m.sum() == 20 * 20 and m[30, 20] and m[49, 39] and not m[50, 39] and not m[49, 40]


def test_pointing_game_inside_and_outside() -> None:
    assert pointing_game(peak_at(30, 40), BOX)
    assert not pointing_game(peak_at(90, 90), BOX)


def test_pointing_game_tolerance_is_in_pixels() -> None:
    # 15 px right of the last column inside (x = 39) is a hit, 16 px is not.
    assert distance_to_box((54, 40), BOX) == 15
    assert pointing_game(peak_at(54, 40), BOX, tolerance=15)
    assert not pointing_game(peak_at(55, 40), BOX, tolerance=15)
    assert not pointing_game(peak_at(54, 40), BOX, tolerance=0)
    # Diagonal distance is Euclidean: (x0 - 9, y0 - 12) is 15 px from the corner.
    assert distance_to_box((11, 18), BOX) == pytest.approx(15.0)


def test_pointing_game_empty_or_negative_map_is_a_miss() -> None:
    assert not pointing_game(np.zeros((100, 100)), BOX)
    assert not pointing_game(-peak_at(30, 40), BOX)


def test_pointing_game_ties_count_if_any_peak_hits() -> None:
    m = peak_at(90, 90) + peak_at(30, 40)
    assert pointing_game(m, BOX)


def test_energy_in_box() -> None:
    assert energy_in_box(peak_at(30, 40), BOX) == 1.0
    assert energy_in_box(peak_at(90, 90), BOX) == 0.0
    m = peak_at(30, 40) + 3 * peak_at(90, 90) - 5 * peak_at(35, 45)  # negative relevance is ignored
    assert energy_in_box(m, BOX) == pytest.approx(0.25)
    uniform = np.ones((100, 100))
    assert energy_in_box(uniform, BOX) == pytest.approx(400 / 10000)
    assert energy_in_box(np.zeros((100, 100)), BOX) == 0.0


def test_iou_with_box() -> None:
    assert iou_with_box(box_mask((100, 100), BOX), BOX) == 1.0
    assert iou_with_box(np.zeros((100, 100), bool), BOX) == 0.0
    half = box_mask((100, 100), (20, 30, 30, 50))  # the left half of the box
    assert iou_with_box(half, BOX) == pytest.approx(0.5)
    shifted = box_mask((100, 100), (30, 30, 50, 50))  # overlap 10x20, union 30x20
    assert iou_with_box(shifted, BOX) == pytest.approx(200 / 600)


def test_region_box_overlap() -> None:
    # BOX is 20 x 20 at (20, 30). A core of the lesion: all inside, a quarter of the box.
    core = box_mask((100, 100), (25, 35, 35, 45))
    assert region_box_overlap(core, BOX) == (pytest.approx(1.0), pytest.approx(100 / 400))
    # Beside it: overlap 10 x 20 of a 20 x 20 region.
    shifted = box_mask((100, 100), (30, 30, 50, 50))
    assert region_box_overlap(shifted, BOX) == (pytest.approx(0.5), pytest.approx(0.5))
    # Covering it with room to spare: the whole box, a quarter of the region inside.
    big = box_mask((100, 100), (10, 20, 50, 60))
    assert region_box_overlap(big, BOX) == (pytest.approx(0.25), pytest.approx(1.0))
    assert region_box_overlap(np.zeros((100, 100), bool), BOX) == (None, 0.0)


def test_relevance_order_is_descending_and_stable() -> None:
    m = np.array([[0.1, 0.5], [0.5, 0.2]])
    assert relevance_order(m).tolist() == [1, 2, 3, 0]


def _inside_score(image_box):
    """A 'model' whose score is the mean intensity inside the box: only box pixels matter."""
    mask = box_mask((100, 100), image_box)

    def score(batch: np.ndarray) -> np.ndarray:
        return batch[:, mask].mean(axis=1) / 255.0

    return score


def test_deletion_and_insertion_reward_the_right_map() -> None:
    image = np.full((100, 100), 255.0, np.float32)
    black = np.zeros_like(image)
    score = _inside_score(BOX)
    good = box_mask((100, 100), BOX).astype(np.float32)  # points at exactly what the model uses
    bad = 1.0 - good  # points everywhere else
    # Deleting the box first kills the score after 4 % of the pixels; deleting elsewhere first keeps it
    # until the last 4 %.
    assert perturbation_auc(score, image, good, "deletion", black, steps=25) == pytest.approx(0.02, abs=1e-9)
    assert perturbation_auc(score, image, bad, "deletion", black, steps=25) == pytest.approx(0.98, abs=1e-9)
    assert perturbation_auc(score, image, good, "insertion", black, steps=25) == pytest.approx(0.98, abs=1e-9)
    assert perturbation_auc(score, image, bad, "insertion", black, steps=25) == pytest.approx(0.02, abs=1e-9)


def test_perturbation_curve_endpoints() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (100, 100)).astype(np.float32)
    base = blurred_baseline(image)
    score = _inside_score(BOX)
    rel = rng.random((100, 100))
    f, s = perturbation_curve(score, image, rel, "deletion", base, steps=10)
    assert f[0] == 0 and f[-1] == 1 and len(s) == 11
    assert s[0] == pytest.approx(score(image[None])[0]) and s[-1] == pytest.approx(score(base[None])[0])
    f, s = perturbation_curve(score, image, rel, "insertion", base, steps=10)
    assert s[0] == pytest.approx(score(base[None])[0]) and s[-1] == pytest.approx(score(image[None])[0])
    with pytest.raises(ValueError):
        perturbation_curve(score, image, rel[:50], "deletion", base)


def test_auc_trapezoid() -> None:
    assert auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.0])) == pytest.approx(0.75)


def test_rank_correlation() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((20, 20))
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, 3 * a**2 + 1) == pytest.approx(1.0)  # monotone transform
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert abs(rank_correlation(a, rng.random((20, 20)))) < 0.2
    assert rank_correlation(a, np.zeros((20, 20))) == 0.0


def test_sharpness_prefers_detail_and_ignores_scale() -> None:
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 12.0**2))
    checker = ((xx // 2 + yy // 2) % 2).astype(float)
    assert sharpness(checker) > 10 * sharpness(blob)
    assert sharpness(5 * blob) == pytest.approx(sharpness(blob))
    assert sharpness(np.zeros((64, 64))) == 0.0
    assert sharpness(np.ones((64, 64))) == 0.0


def test_box_to_input_inverts_the_crop_and_resize() -> None:
    # No crop, same size: unchanged.
    assert box_to_input((10, 20, 30, 40), (0, 0, 100, 100), 100) == (10, 20, 30, 40)
    # Crop (50, 100)-(250, 300) of a scan, resized to 100 px: shift by the corner, halve.
    assert box_to_input((70, 140, 110, 180), (50, 100, 250, 300), 100) == (10, 20, 30, 40)
    # Rounded outwards: a box between input pixels covers every pixel it touches.
    assert box_to_input((51, 101, 52, 102), (50, 100, 250, 300), 100) == (0, 0, 1, 1)
    # Clipped to the input; a box outside the crop is empty.
    assert box_to_input((0, 0, 70, 140), (50, 100, 250, 300), 100) == (0, 0, 10, 20)
    x0, y0, x1, y1 = box_to_input((300, 0, 400, 50), (50, 100, 250, 300), 100)
    assert x0 == x1 or y0 == y1
    with pytest.raises(ValueError, match="empty crop"):
        box_to_input((0, 0, 1, 1), (5, 5, 5, 9), 10)


def test_mirrored_box_reflects_left_right() -> None:
    assert mirrored_box((10, 20, 30, 40), 100) == (70, 20, 90, 40)
    assert mirrored_box(mirrored_box(BOX, 100), 100) == BOX
    m = box_mask((100, 100), BOX)
    assert np.array_equal(box_mask((100, 100), mirrored_box(BOX, 100)), m[:, ::-1])


def test_occlusion_drop_measures_reliance_on_the_box() -> None:
    image = np.full((100, 100), 100.0, np.float32)
    image[30:50, 20:40] = 255.0  # a bright "lesion" filling BOX

    def lesion_score(batch: np.ndarray) -> np.ndarray:  # depends on the lesion only
        return batch[:, 30:50, 20:40].mean(axis=(1, 2)) / 255.0

    def global_score(batch: np.ndarray) -> np.ndarray:  # ignores where the lesion is
        return np.full(len(batch), 0.9)

    assert occlusion_drop(lesion_score, image, BOX) == pytest.approx(1.0)
    assert occlusion_drop(lesion_score, image, mirrored_box(BOX, 100)) == pytest.approx(0.0)
    assert occlusion_drop(lesion_score, image, BOX, fill=127.5) == pytest.approx(0.5)
    assert occlusion_drop(global_score, image, BOX) == 0.0
    assert image[35, 25] == 255.0  # the input is not modified


def test_centre_map_is_a_centred_gaussian() -> None:
    m = centre_map(9)
    assert m.shape == (9, 9) and m.dtype == np.float32
    assert np.unravel_index(np.argmax(m), m.shape) == (4, 4) and m[4, 4] == pytest.approx(1.0)
    assert np.allclose(m, m[::-1, :]) and np.allclose(m, m.T)
    # sigma = a quarter of the side (25 px of 100).
    big = centre_map(100)
    assert big[50, 75] == pytest.approx(np.exp(-(25.5**2 + 0.5**2) / (2 * 25.0**2)), rel=1e-5)  # centre at 49.5
    # A centred box wins the pointing game, a corner box does not.
    assert pointing_game(m, (3, 3, 6, 6), tolerance=0) and not pointing_game(m, (0, 0, 2, 2), tolerance=0)
