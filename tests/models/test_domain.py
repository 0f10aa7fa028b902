"""The out-of-domain statistics: the shrunk covariance, the score, calibration and exact storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainxai.models.domain import DomainModel, DomainModelError, domain_path, energy, ledoit_wolf


def _blobs(rng: np.random.Generator, n: int = 300, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian classes with a shared, correlated covariance."""
    labels = np.arange(n) % 3
    centres = rng.normal(0, 4, (3, d))
    mix = rng.normal(0, 1, (d, d)) / np.sqrt(d)
    return (centres[labels] + rng.normal(0, 1, (n, d)) @ mix).astype(np.float32), labels


def test_ledoit_wolf_matches_scikit_learn(rng: np.random.Generator) -> None:
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

    x = rng.normal(0, 1, (80, 30)) @ rng.normal(0, 1, (30, 30))
    x -= x.mean(axis=0)
    cov, shrinkage = ledoit_wolf(x)
    sk_cov, sk_shrinkage = sk_ledoit_wolf(x, assume_centered=True)
    assert shrinkage == pytest.approx(sk_shrinkage, rel=1e-9)
    np.testing.assert_allclose(cov, sk_cov, rtol=1e-9, atol=1e-12)


def test_score_is_the_mahalanobis_distance_to_the_nearest_class_mean(rng: np.random.Generator) -> None:
    x, y = _blobs(rng)
    model = DomainModel.fit(x, y)
    cov, _ = ledoit_wolf(x - np.stack([x[y == c].mean(0) for c in range(3)])[y])
    prec = np.linalg.inv(cov)
    probe = rng.normal(0, 6, (5, x.shape[1]))
    by_hand = np.array(
        [min(np.sqrt((p - x[y == c].mean(0)) @ prec @ (p - x[y == c].mean(0))) for c in range(3)) for p in probe]
    )
    np.testing.assert_allclose(model.score(probe), by_hand, rtol=1e-4)
    # A point far from every class scores higher than the training points.
    far = x.mean(0) + 50 * np.ones(x.shape[1])
    assert model.score(far[None])[0] > model.score(x).max()


def test_calibration_flags_the_requested_share(rng: np.random.Generator) -> None:
    x, y = _blobs(rng, n=2000)
    model = DomainModel.fit(x[:1000], y[:1000])
    assert not model.calibrated
    with pytest.raises(DomainModelError):
        model.in_domain(model.score(x[:3]))
    threshold = model.calibrate(x[1000:], quantile=0.95)
    assert model.calibrated and model.info["n_calibration"] == 1000
    flagged = 1 - model.in_domain(model.score(x[1000:])).mean()
    assert flagged == pytest.approx(0.05, abs=0.002)
    assert threshold == pytest.approx(np.quantile(model.score(x[1000:]), 0.95))
    with pytest.raises(ValueError):
        model.calibrate(x[1000:], quantile=1.0)


def test_combined_score_is_the_larger_scaled_part(rng: np.random.Generator) -> None:
    x, y = _blobs(rng, n=1200)
    logits = rng.normal(0, 2, (len(x), 3))
    model = DomainModel.fit(x[:600], y[:600])
    threshold = model.calibrate(x[600:], quantile=0.99, logits=logits[600:])
    assert model.uses_logits and model.norms.shape == (2, 2)
    dist, en = model.mahalanobis(x[600:]), energy(logits[600:])
    # Each part is scaled to 0 at its held-out median and 1 at its held-out 99th percentile.
    (m_med, m_scale), (e_med, e_scale) = model.norms
    assert m_med == pytest.approx(np.median(dist)) and m_med + m_scale == pytest.approx(np.quantile(dist, 0.99))
    assert e_med == pytest.approx(np.median(en)) and e_med + e_scale == pytest.approx(np.quantile(en, 0.99))
    combined = model.score(x[600:], logits[600:])
    np.testing.assert_allclose(combined, np.maximum((dist - m_med) / m_scale, (en - e_med) / e_scale))
    assert threshold == pytest.approx(np.quantile(combined, 0.99))
    # Features near a class mean but very low logits (high energy): flagged by the energy part alone.
    typical = x[600:601]
    assert (model.mahalanobis(typical)[0] - m_med) / m_scale < 1
    assert model.score(typical, np.full((1, 3), -20.0))[0] > threshold
    with pytest.raises(ValueError, match="logits"):
        model.score(x[:2])


def test_round_trip_through_save_and_load_is_exact(rng: np.random.Generator, tmp_path: Path) -> None:
    x, y = _blobs(rng)
    model = DomainModel.fit(x, y, dtype="float16")
    logits = rng.normal(0, 2, (len(x), 3))
    model.calibrate(x[:100], logits=logits[:100])
    model.info["split"] = {"seed": 3, "calibration_files": ["glioma/a.jpg", "notumor/b.jpg"]}
    path = model.save(tmp_path / "m.domain.npz")
    back = DomainModel.load(path)
    for name in ("mean", "whitener", "class_means", "norms"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
        assert getattr(back, name).dtype == getattr(model, name).dtype
    assert back.whitener.dtype == np.float16
    assert back.threshold == model.threshold and back.info == model.info
    np.testing.assert_array_equal(back.score(x, logits), model.score(x, logits))


def test_bad_files_raise_domain_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DomainModelError):
        DomainModel.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", mean=np.zeros(3))
    with pytest.raises(DomainModelError):
        DomainModel.load(tmp_path / "partial.npz")


def test_domain_path_and_energy() -> None:
    assert domain_path("w/default") == Path("w/default.domain.npz")
    assert domain_path("w/default.safetensors") == Path("w/default.domain.npz")
    assert domain_path("w/default.json") == Path("w/default.domain.npz")
    logits = np.array([[0.0, 0.0], [10.0, -10.0]])
    np.testing.assert_allclose(energy(logits), [-np.log(2.0), -(10 + np.log1p(np.exp(-20.0)))])
