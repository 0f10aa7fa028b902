"""Post-hoc temperature scaling (Guo et al., 2017) as pure functions of logits and labels.

One scalar ``T > 0`` divides the logits before the softmax; it is chosen to minimise the mean
negative log-likelihood on held-out data (a validation split, never the test set). Dividing by a
positive constant never changes the arg-max, so accuracy is untouched; only the confidences move.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from brainxai.evaluation.metrics import expected_calibration_error

#: Search interval for ``T``; the optimiser works on ``log T`` inside it.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise ValueError(f"logits {z.shape} and labels {y.shape} must be (N, C) and (N,)")
    if len(y) == 0:
        raise ValueError("no samples to fit a temperature on")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or infinity")
    return z, y


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(logits / T)`` along the last axis, in float64 (max-shifted, so it never overflows)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` along the last axis, float64."""
    return np.exp(log_softmax(logits, temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    z, y = _check(logits, labels)
    return float(-log_softmax(z, temperature)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The ``T`` in ``bounds`` minimising the mean NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``, so a bounded scalar search finds
    the minimum. A result at a bound means the data wanted more (e.g. a perfectly separated tiny set
    drives ``T`` towards 0).

    Args:
        logits: ``(N, C)`` raw model outputs (no temperature applied).
        labels: ``(N,)`` true class indices.
        bounds: ``(T_min, T_max)``.
    """
    from scipy.optimize import minimize_scalar  # local: SciPy is not needed to classify

    z, y = _check(logits, labels)
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    rows = np.arange(len(y))

    def objective(log_t: float) -> float:
        return float(-log_softmax(z, math.exp(log_t))[rows, y].mean())

    res = minimize_scalar(objective, bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": 1e-6})
    t = float(math.exp(res.x))
    # Brent's bounded search never evaluates the end points themselves; take one when it is better.
    # T = 1 is a candidate too, so the fit can never do worse than leaving the logits alone.
    candidates = [(float(res.fun), t)] + [(objective(math.log(v)), v) for v in (lo, hi, 1.0) if lo <= v <= hi]
    return min(candidates, key=lambda c: c[0])[1]


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and what it did on the data it was fitted on."""

    temperature: float
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def fit_temperature_report(logits: np.ndarray, labels: np.ndarray) -> TemperatureFit:
    """Fits ``T`` and reports mean NLL and ECE (15 bins) before (``T = 1``) and after."""
    z, y = _check(logits, labels)
    t = fit_temperature(z, y)
    return TemperatureFit(
        temperature=t,
        n=int(len(y)),
        nll_before=nll(z, y),
        nll_after=nll(z, y, t),
        ece_before=expected_calibration_error(y, softmax(z)),
        ece_after=expected_calibration_error(y, softmax(z, t)),
    )
