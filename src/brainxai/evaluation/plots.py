"""Evaluation plots. Each function returns a matplotlib Figure; callers decide where it goes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are written to files, never shown
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from brainxai.evaluation.metrics import reliability_bins


def confusion_matrix_figure(cm: np.ndarray | list, classes: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Counts with row-normalised colour (each row sums to 1: recall on the diagonal)."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    return fig


def roc_figure(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], aucs: Sequence[float | None]) -> Figure:
    """One-vs-rest ROC curve per class."""
    fig, ax = plt.subplots(figsize=(5, 4.6), dpi=120)
    for k, name in enumerate(classes):
        positives = y_true == k
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, k])
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[k]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC, one vs rest")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(y_true: np.ndarray, probs: np.ndarray, ece: float, n_bins: int = 15) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with bin counts."""
    bins = reliability_bins(y_true, probs, n_bins)
    centers = (np.array(bins["lower"]) + np.array(bins["upper"])) / 2
    width = 1.0 / n_bins
    acc = np.array(bins["accuracy"])
    fig, ax = plt.subplots(figsize=(5, 4.6), dpi=120)
    ok = ~np.isnan(acc)
    ax.bar(centers[ok], acc[ok], width=width * 0.9, color="#4c72b0", edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    for c, a, n in zip(centers[ok], acc[ok], np.array(bins["count"])[ok]):
        ax.text(c, min(a + 0.02, 1.02), str(n), ha="center", fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {ece:.4f}; numbers: images per bin)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def training_curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch, train and validation (absent for a run without a validation split),
    with phase boundaries."""
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    validated = any(h.get("val_loss") is not None for h in history)
    for ax, key, title in ((ax1, "loss", "loss"), (ax2, "accuracy", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        if validated:
            values = [np.nan if h.get(f"val_{key}") is None else h[f"val_{key}"] for h in history]
            ax.plot(epochs, values, "o-", label="validation")
        ax.set_title(title if validated else f"{title} (no validation split)")
    for i in range(1, len(history)):
        if history[i].get("phase") != history[i - 1].get("phase"):
            for ax in (ax1, ax2):
                ax.axvline(epochs[i] - 0.5, color="grey", lw=0.8, ls=":")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def size_scatter_figure(sizes: Sequence[tuple[int, int]], labels: Sequence[str]) -> Figure:
    """Width x height of every image, coloured by split/class, to spot inconsistent exports."""
    fig, ax = plt.subplots(figsize=(5.5, 4.6), dpi=120)
    sizes_arr = np.asarray(sizes)
    rng = np.random.default_rng(0)
    for name in sorted(set(labels)):
        m = np.array([lab == name for lab in labels])
        jitter = rng.uniform(-0.3, 0.3, size=(m.sum(), 2))  # overlapping identical sizes stay visible
        ax.scatter(
            sizes_arr[m, 0] + jitter[:, 0], sizes_arr[m, 1] + jitter[:, 1], s=8, alpha=0.5, label=f"{name} ({m.sum()})"
        )
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("Image sizes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str) -> None:
    """Writes a figure to PNG and releases its memory."""
    fig.savefig(path)
    plt.close(fig)
