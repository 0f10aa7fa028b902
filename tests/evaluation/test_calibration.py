"""Temperature scaling as pure functions: recovering a known temperature from sampled labels."""

import numpy as np
import pytest

from brainxai.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    fit_temperature,
    fit_temperature_report,
    log_softmax,
    nll,
    softmax,
)


def _sample_labels(z: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from softmax(z / T) (inverse-CDF sampling)."""
    p = np.exp(z / temperature)
    p /= p.sum(axis=1, keepdims=True)
    return (p.cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_fit_recovers_a_known_temperature(true_t):
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, (4000, 4))
    y = _sample_labels(z, true_t, rng)
    fitted = fit_temperature(z, y)
    assert fitted == pytest.approx(true_t, rel=0.10)
    # The fitted value is the minimum of the NLL: nudging it either way does worse.
    assert nll(z, y, fitted) <= min(nll(z, y, fitted * 0.98), nll(z, y, fitted * 1.02))

    fit = fit_temperature_report(z, y)
    assert fit.temperature == fitted and fit.n == 4000
    assert fit.nll_after <= fit.nll_before
    # z is over-confident for labels drawn with T0 > 1 and under-confident for T0 < 1; either is fixed.
    assert fit.ece_after < fit.ece_before
    assert fit.nll_before == pytest.approx(nll(z, y)) and fit.nll_after == pytest.approx(nll(z, y, fitted))


def test_already_calibrated_logits_keep_a_temperature_near_one():
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 2.0, (4000, 4))
    y = _sample_labels(z, 1.0, rng)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.10)


def test_softmax_is_stable_and_temperature_never_changes_the_argmax():
    z = np.array([[1000.0, 999.0, -1000.0], [-5e4, -5e4 + 2.0, -5e4 + 1.0]])
    for t in (0.05, 1.0, 20.0):
        p = softmax(z, t)
        assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0)
        assert (p.argmax(axis=1) == z.argmax(axis=1)).all()
        assert np.isfinite(log_softmax(z, t)).all()
    assert softmax(z, 2.0) == pytest.approx(softmax(z / 2.0))


def test_separable_data_goes_to_the_bound_and_bad_input_is_refused():
    # Every label is the arg-max: sharper is always better, so T hits the lower bound.
    z = np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    y = np.array([0, 1, 0])
    assert fit_temperature(z, y) == TEMPERATURE_BOUNDS[0]
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no samples"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
