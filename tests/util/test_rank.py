"""Average ranks and the Spearman correlation: equal to SciPy's, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from brainxai.util.rank import average_ranks
from brainxai.util.stats import spearman


def _samples() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(40):
        n = int(rng.integers(2, 30_000))
        a = rng.normal(size=n).astype(np.float32)
        b = (a + rng.normal(size=n)).astype(np.float32)
        if i % 2 == 0:
            a = np.maximum(a, 0)  # a ReLU'd map: many tied zeros
        if i % 3 == 0:
            b = np.round(b, 1)  # many small ties
        if i % 5 == 0:
            a = -np.abs(a)
            a[::4] = -0.0  # -0.0 and 0.0 tie
        if i % 7 == 0:
            b = b.astype(np.float64)
        if i % 11 == 0:
            b = (b * 10).astype(np.int32)
        out.append((a, b))
    return out


def test_ranks_equal_scipy() -> None:
    for a, b in _samples():
        assert np.array_equal(average_ranks(a), rankdata(a))
        assert np.array_equal(average_ranks(b), rankdata(b))


def test_ranks_of_known_values() -> None:
    ranks = average_ranks(np.array([[3.0, 1.0], [2.0, 1.0]], np.float32))
    np.testing.assert_array_equal(ranks, [4.0, 1.5, 3.0, 1.5])
    np.testing.assert_array_equal(average_ranks(np.array([-0.0, 0.0, -1.0], np.float32)), [2.5, 2.5, 1.0])
    np.testing.assert_array_equal(average_ranks(np.array([-np.inf, 5, np.inf], np.float32)), [1.0, 2.0, 3.0])


def test_spearman_bit_identical_to_scipy() -> None:
    checked = 0
    for a, b in _samples():
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        expected = float(spearmanr(a.astype(np.float64), b.astype(np.float64)).statistic)
        assert spearman(a, b) == expected
        checked += 1
    assert checked > 30


def test_spearman_undefined_and_nan_cases() -> None:
    assert spearman(np.ones(5), np.arange(5)) is None
    assert spearman(np.arange(1), np.arange(1)) is None
    assert np.isnan(spearman(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0])))
    with pytest.raises(ValueError, match="differ in size"):
        spearman(np.arange(3), np.arange(4))
    assert spearman(np.arange(10, dtype=np.float32), -np.arange(10, dtype=np.float32)) == pytest.approx(-1.0)
