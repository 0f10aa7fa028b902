"""Stratified, seeded train/validation splits (the Testing folder is never used for selection)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into train and validation, preserving class proportions.

    Args:
        labels: ``(N,)`` integer labels.
        val_fraction: Share of each class held out for validation, in [0, 1); 0 holds out nothing
            (a refit on all the data, once the recipe has been chosen on a split).
        seed: Random seed.

    Returns:
        ``(train_idx, val_idx)``, each sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    idx = np.arange(len(labels))
    if val_fraction == 0.0:
        return idx, idx[:0]
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, stratify=labels, random_state=seed)
    return np.sort(train_idx), np.sort(val_idx)
