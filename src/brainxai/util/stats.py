"""Small statistics shared by the analysis, the explanation metrics and the benchmarks."""

from __future__ import annotations

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray, *, min_n: int = 2) -> float | None:
    """Spearman rank correlation of two equally long samples (arrays are flattened).

    Returns None when it is undefined: fewer than ``min_n`` values, or either sample constant.
    Non-finite values are not handled here; callers clean their inputs.
    """
    from scipy.stats import spearmanr  # SciPy is heavy; only callers that correlate pay for it

    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"samples differ in size: {x.size} vs {y.size}")
    if x.size < min_n or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)
