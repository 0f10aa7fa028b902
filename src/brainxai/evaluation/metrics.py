"""Classification metrics as pure functions of labels and probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def per_class_from_confusion(cm: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall (sensitivity), specificity and F1 for each class (one-vs-rest)."""
    total = cm.sum()
    rows = []
    for k in range(cm.shape[0]):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        tn = total - tp - fn - fp
        precision = _safe_div(tp, tp + fp)
        recall = _safe_div(tp, tp + fn)
        rows.append(
            {
                "precision": precision,
                "recall": recall,
                "specificity": _safe_div(tn, tn + fp),
                "f1": _safe_div(2 * precision * recall, precision + recall),
                "support": int(tp + fn),
            }
        )
    return rows


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 scores."""
    rows = per_class_from_confusion(confusion_matrix(y_true, y_pred, n_classes))
    return float(np.mean([r["f1"] for r in rows]))


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """ROC-AUC of each class against the rest (None where a class is absent or alone)."""
    out: list[float | None] = []
    for k in range(probs.shape[1]):
        positives = y_true == k
        if positives.all() or not positives.any():
            out.append(None)
        else:
            out.append(float(roc_auc_score(positives, probs[:, k])))
    return out


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE: bin by top-class confidence, weighted mean of |accuracy - confidence| over bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin mean confidence, accuracy and count for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": [], "lower": [], "upper": []}
    for b in range(n_bins):
        m = idx == b
        out["lower"].append(float(edges[b]))
        out["upper"].append(float(edges[b + 1]))
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else float("nan"))
        out["accuracy"].append(float(correct[m].mean()) if m.any() else float("nan"))
    return out


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (e.g. a pointing game).

    Unlike the normal approximation it stays inside [0, 1] and is usable for proportions near 0 or 1
    and for small ``n``, as with a 60-image box set.

    Raises:
        ValueError: ``n`` < 1, ``successes`` outside ``0..n`` or ``confidence`` outside (0, 1).
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1 in exact arithmetic; don't leave rounding noise.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return float(lo), float(hi)


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals for accuracy and macro-F1 (resampling images)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    accs, f1s = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        accs[b] = np.mean(y_true[i] == y_pred[i])
        f1s[b] = macro_f1(y_true[i], y_pred[i], n_classes)
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    return {
        "accuracy": tuple(float(v) for v in np.percentile(accs, q)),  # type: ignore[dict-item]
        "macro_f1": tuple(float(v) for v in np.percentile(f1s, q)),  # type: ignore[dict-item]
    }


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics of one evaluation, JSON-ready.

    Args:
        y_true: ``(N,)`` true class indices.
        probs: ``(N, C)`` predicted probabilities.
        classes: Class names, in column order.
        n_boot: Bootstrap resamples for the confidence intervals (0 disables them).
        seed: Bootstrap seed.

    Returns:
        ``n``, ``accuracy``, ``macro_f1``, ``macro_precision``, ``macro_recall``, ``macro_specificity``,
        ``macro_auc``, ``ece``, ``confusion_matrix``, ``per_class`` ({class: {precision, recall,
        specificity, f1, auc, support}}) and ``ci95`` ({accuracy, macro_f1}: [low, high]).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(y_true) or probs.shape[1] != len(classes):
        raise ValueError(f"probs shape {probs.shape} does not fit {len(y_true)} labels and {len(classes)} classes")
    n_classes = len(classes)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    rows = per_class_from_confusion(cm)
    aucs = one_vs_rest_auc(y_true, probs)
    per_class = {c: {**r, "auc": a} for c, r, a in zip(classes, rows, aucs)}
    valid_aucs = [a for a in aucs if a is not None]
    result: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean([r["f1"] for r in rows])),
        "macro_precision": float(np.mean([r["precision"] for r in rows])),
        "macro_recall": float(np.mean([r["recall"] for r in rows])),
        "macro_specificity": float(np.mean([r["specificity"] for r in rows])),
        "macro_auc": float(np.mean(valid_aucs)) if valid_aucs else None,
        "ece": expected_calibration_error(y_true, probs),
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
        "per_class": per_class,
    }
    if n_boot > 0 and len(y_true):
        ci = bootstrap_ci(y_true, y_pred, n_classes, n_boot=n_boot, seed=seed)
        result["ci95"] = {k: list(v) for k, v in ci.items()}
    return result


def proportion_bootstrap_ci(
    hits: np.ndarray | Sequence[bool], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float] | None:
    """Percentile bootstrap interval for a proportion (accuracy on a subset, a class's recall), resampling items.

    Returns:
        ``(low, high)``; None for an empty sample or ``n_boot`` < 1.
    """
    hits = np.asarray(hits, dtype=np.float64)
    if not len(hits) or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # in blocks, to bound memory on large samples
        k = min(256, n_boot - start)
        means[start : start + k] = hits[rng.integers(0, len(hits), (k, len(hits)))].mean(axis=1)
    q = np.percentile(means, (100 * alpha / 2, 100 * (1 - alpha / 2)))
    return float(q[0]), float(q[1])
