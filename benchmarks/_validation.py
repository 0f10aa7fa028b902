"""Helper shared by the validation-only decisions (flip TTA, ensemble): a checkpoint's own validation split."""

from __future__ import annotations

import numpy as np

from brainxai.training.checkpoint import LoadedCheckpoint, load_checkpoint
from brainxai.training.split import training_split


def own_validation_split(
    checkpoint: str, data: str, cache_dir: str | None
) -> tuple[LoadedCheckpoint, np.ndarray, np.ndarray, np.ndarray]:
    """A restored ``checkpoint`` and the prepared images, labels and Training indices of the validation
    split it was trained with (its recipe's fraction and seed). Testing is never read."""
    loaded = load_checkpoint(checkpoint)
    recipe = loaded.meta.recipe
    split = training_split(
        data, loaded.preprocess, val_fraction=recipe["val_fraction"], seed=recipe["seed"],
        limit_per_class=recipe.get("limit_per_class"), cache_dir=cache_dir,
    )
    idx = np.asarray(split.val_idx)
    return loaded, split.images[idx], split.labels[idx], idx
