"""Helpers shared by the validation-only decisions (flip TTA, ensemble, weight average): members named on the
command line, a checkpoint's own validation split, and float16 rounding of parameters."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from brainxai.models.checkpoint import LoadedCheckpoint, load_checkpoint
from brainxai.training.split import TrainingSplit, training_split


def member_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``NAME=CHECKPOINT`` arguments -> ``(name, checkpoint)`` pairs."""
    pairs = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not (sep and name and path):
            raise SystemExit(f"--checkpoint expects NAME=CHECKPOINT, got {spec!r}")
        pairs.append((name, path))
    return pairs


def checkpoint_split(loaded: LoadedCheckpoint, data: str, cache_dir: str | None) -> TrainingSplit:
    """The split of Training a checkpoint was trained with (its recipe's fraction, seed and per-class limit),
    decoded with its preprocessing. Testing is never read."""
    recipe = loaded.meta.recipe
    return training_split(
        data, loaded.preprocess, val_fraction=recipe["val_fraction"], seed=recipe["seed"],
        limit_per_class=recipe.get("limit_per_class"), cache_dir=cache_dir,
    )


def own_validation_split(
    checkpoint: str, data: str, cache_dir: str | None
) -> tuple[LoadedCheckpoint, np.ndarray, np.ndarray, np.ndarray]:
    """A restored ``checkpoint`` and the prepared images, labels and Training indices of the validation
    split it was trained with."""
    loaded = load_checkpoint(checkpoint)
    split = checkpoint_split(loaded, data, cache_dir)
    idx = np.asarray(split.val_idx)
    return loaded, split.images[idx], split.labels[idx], idx


def round_to_half(model: nn.Module) -> None:
    """Rounds parameters to float16 and back, as a half-precision file stores them (buffers, such as
    BatchNorm running statistics, stay float32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
