"""Small statistics shared by the analysis, the explanation metrics and the benchmarks."""

from __future__ import annotations

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray, *, min_n: int = 2) -> float | None:
    """Spearman rank correlation of two equally long samples (arrays are flattened).

    Returns None when it is undefined: fewer than ``min_n`` values, or either sample constant.
    Non-finite values are not handled here; callers clean their inputs.
    """
    from brainxai.util.rank import average_ranks

    a, b = np.asarray(a), np.asarray(b)
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"samples differ in size: {x.size} vs {y.size}")
    if x.size < min_n or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        from scipy.stats import spearmanr  # SciPy is heavy; only its NaN handling is needed here

        return float(spearmanr(x, y).statistic)
    # SciPy's statistic, computed the same way on the same ranks (bit-identical), without its sort's overhead;
    # float32 ranks as its float64 image does, and faster (brainxai.util.rank).
    rx = average_ranks(a if a.dtype == np.float32 else x)
    ry = average_ranks(b if b.dtype == np.float32 else y)
    return float(np.corrcoef(np.column_stack((rx, ry)), rowvar=False)[1, 0])
