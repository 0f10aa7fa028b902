"""grid_energy: the share of a map's spectral energy at a stride lattice's frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.explain.quality import centre_map, grid_energy


def _lattice(size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[:size, :size]


def test_checkerboard_is_all_grid() -> None:
    yy, xx = _lattice()
    assert grid_energy(((yy + xx) % 2).astype(float)) == pytest.approx(1.0)


def test_two_pixel_stripes_are_all_grid() -> None:
    _, xx = _lattice()
    assert grid_energy((xx % 2).astype(float)) == pytest.approx(1.0)


def test_smooth_gaussian_has_no_grid() -> None:
    assert grid_energy(centre_map(224)) < 1e-6


def test_white_noise_scores_the_band_share() -> None:
    noise = np.random.default_rng(0).normal(size=(224, 224))
    assert 0.005 < grid_energy(noise) < 0.03


def test_checkerboard_on_a_blob_is_between() -> None:
    yy, xx = _lattice()
    blob = centre_map(224)
    printed = blob * (1.0 + 0.5 * ((yy + xx) % 2))
    assert 0.0 < grid_energy(printed) < grid_energy(((yy + xx) % 2).astype(float))
    assert grid_energy(printed) > 10 * grid_energy(blob) + 0.01


def test_stride_four_sees_the_four_pixel_lattice_that_stride_two_misses() -> None:
    _, xx = _lattice()
    period_four = (xx % 4 < 2).astype(float)
    assert grid_energy(period_four, stride=4) == pytest.approx(1.0)
    assert grid_energy(period_four, stride=2) < 1e-6


def test_constant_map_and_bad_stride() -> None:
    assert grid_energy(np.ones((16, 16))) == 0.0
    with pytest.raises(ValueError):
        grid_energy(np.ones((16, 16)), stride=1)


def test_default_lrp_map_of_the_samples_has_no_stride_grid(samples_dir) -> None:
    # The shipped model's 3x3, stride-2 stem printed a checkerboard through zennit's Flat first-layer rule;
    # the default composite's UniformFlat removes it at its source (experiments/stride_pooled).
    from brainxai.explain import create_explainer
    from brainxai.inference import Classifier
    from brainxai.io import read_scan
    from brainxai.pipeline import steps

    classifier = Classifier.load(None, device="cpu")
    prepared = [steps.prepare(read_scan(samples_dir / f"{n}.jpg").pixels, classifier) for n in ("glioma", "pituitary")]
    energy = {}
    for composite in ("epsilon-plus-flat", None):
        options = {"composite": composite} if composite else {}
        with create_explainer("lrp", classifier.model, **options) as explainer:
            maps = steps.explain(explainer, classifier, prepared, [0, 3])
        energy[composite] = [grid_energy(e.relevance) for e in maps]
    assert all(e > 0.1 for e in energy["epsilon-plus-flat"])
    assert all(e < 0.005 for e in energy[None])
