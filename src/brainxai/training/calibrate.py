"""Fitting a checkpoint's softmax temperature on its own validation split.

The trainer calls :func:`fit_checkpoint_temperature` at the end of a run on the split it trained
with; ``brainxai calibrate`` calls :func:`calibrate_checkpoint`, which rebuilds that split from the
recipe stored in the checkpoint first, or :func:`carry_temperature` for a checkpoint trained without
a validation split. The test split is never used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainxai.data.dataset import DatasetLayoutError
from brainxai.evaluation.calibration import TEMPERATURE_BOUNDS, fit_temperature_report
from brainxai.inference import Classifier
from brainxai.models.checkpoint import (
    CARRIED_OVER_KEY,
    CheckpointError,
    CheckpointMeta,
    LoadedCheckpoint,
    checkpoint_paths,
    file_sha256,
    load_checkpoint,
    read_checkpoint_json,
    update_checkpoint_meta,
)
from brainxai.training.split import TrainingSplit, training_split

logger = logging.getLogger(__name__)

METHOD = "temperature scaling"


def split_description(val_fraction: float, seed: int, limit_per_class: int | None = None) -> str:
    """How the fitting data was chosen, for the checkpoint's ``calibration.fitted_on``."""
    limit = f", at most {limit_per_class} images per class" if limit_per_class else ""
    return f"validation split of Training (seed {seed}, fraction {val_fraction}{limit})"


def fit_checkpoint_temperature(
    checkpoint: str | Path | LoadedCheckpoint,
    images: np.ndarray,
    labels: np.ndarray,
    fitted_on: str,
    device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Fits the temperature of a checkpoint's model on prepared images; writes nothing.

    Args:
        checkpoint: The checkpoint (stem or either file, or already loaded); its stored temperature is ignored.
        images: ``(N, S, S)`` prepared ``uint8`` images (the checkpoint's preprocessing).
        labels: ``(N,)`` true class indices.
        fitted_on: Description of where the images come from.
        device: Where to run the model.

    Returns:
        ``{"temperature", "method", "fitted_on", "n", "nll_before", "nll_after", "ece_before",
        "ece_after"}``.
    """
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    classifier = Classifier(loaded, device=device)
    logits = classifier.logits_prepared(images)
    fit = fit_temperature_report(logits, labels)
    if fit.temperature in TEMPERATURE_BOUNDS:
        logger.warning(
            "the fitted temperature %.3g sits at the edge of its search range %s (%d validation images): "
            "the validation split is too small or too easy to calibrate on",
            fit.temperature,
            TEMPERATURE_BOUNDS,
            fit.n,
        )
    result = fit.to_dict()
    return {"temperature": result.pop("temperature"), "method": METHOD, "fitted_on": fitted_on, **result}


def _split_recipe(checkpoint: str | Path, meta: CheckpointMeta) -> tuple[float, int]:
    """The validation fraction and seed of the checkpoint's split, checked to be rebuildable."""
    recipe = meta.recipe
    missing = [k for k in ("val_fraction", "seed") if k not in recipe]
    if missing or not meta.dataset_fingerprint:
        raise CheckpointError(
            f"{checkpoint}: the checkpoint records no "
            + (f"recipe field(s) {', '.join(missing)}" if missing else "dataset fingerprint")
            + "; its validation split cannot be rebuilt"
        )
    val_fraction, seed = float(recipe["val_fraction"]), int(recipe["seed"])
    if val_fraction == 0:
        raise CheckpointError(
            f"{checkpoint} was trained on all of Training (no validation split) and cannot be calibrated on its own; "
            "carry the temperature over from the run its recipe was chosen on (`brainxai calibrate --from`)"
        )
    return val_fraction, seed


def _check_rebuilt_split(split: TrainingSplit, meta: CheckpointMeta) -> None:
    """Refuses a rebuilt split that is not the one the checkpoint was trained with."""
    if split.fingerprint != meta.dataset_fingerprint:
        raise DatasetLayoutError(
            f"dataset fingerprint mismatch: the checkpoint was trained on data with fingerprint "
            f"{meta.dataset_fingerprint}, but {split.folder} has fingerprint {split.fingerprint} "
            "(different files, sizes or labels); the validation split cannot be rebuilt from it. "
            "Pass the training data the checkpoint was trained on."
        )
    recorded_n = meta.recipe.get("data_info", {}).get("n_val")
    if recorded_n is not None and recorded_n != len(split.val_idx):
        raise CheckpointError(
            f"the rebuilt validation split has {len(split.val_idx)} images, the checkpoint recorded {recorded_n}"
        )


def calibrate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    device: str | torch.device = "auto",
    cache_dir: str | Path | None = ".cache/brainxai",
    progress: bool = True,
) -> dict[str, Any]:
    """Rebuilds a checkpoint's validation split, fits its temperature and stores it in the JSON.

    Args:
        checkpoint: The checkpoint to calibrate (its JSON is rewritten atomically).
        data: Dataset root (with ``Training/``) or the training folder: the same files the model was
            trained on, possibly at another path than the recorded one.
        device: Where to run the model.
        cache_dir: Decoded-image cache.
        progress: Show a progress bar while decoding.

    Returns:
        What :func:`fit_checkpoint_temperature` returns.

    Raises:
        CheckpointError: The checkpoint records no recipe or data fingerprint to rebuild the split from.
        DatasetLayoutError: ``data`` is not the data the checkpoint was trained on (fingerprint mismatch).
    """
    loaded = load_checkpoint(checkpoint)
    meta = loaded.meta
    recipe = meta.recipe
    val_fraction, seed = _split_recipe(checkpoint, meta)
    limit = recipe.get("limit_per_class")
    split = training_split(
        data,
        meta.preprocess,
        val_fraction=val_fraction,
        seed=seed,
        limit_per_class=limit,
        exclude_twins_of=recipe.get("exclude_twins_of"),
        cache_dir=cache_dir,
        progress=progress,
        exclude_sources=tuple(recipe.get("exclude_sources") or ()),
        # Checkpoints from before mirror-aware twin matching left out plain twins only.
        twins_mirror=bool(recipe.get("data_info", {}).get("excluded_twins_mirror_aware", False)),
    )
    _check_rebuilt_split(split, meta)
    val = split.val_idx
    calibration = fit_checkpoint_temperature(
        loaded,
        split.images[val],
        split.labels[val],
        split_description(val_fraction, seed, limit),
        device=device,
    )
    fields = dict(calibration)
    update_checkpoint_meta(checkpoint, temperature=fields.pop("temperature"), calibration=fields)
    return calibration


def carry_temperature(checkpoint: str | Path, source: str | Path) -> dict[str, Any]:
    """Copies the temperature fitted for ``source`` into ``checkpoint`` and records where it came from.

    For a refit on all of Training (``--val-fraction 0``): it has no validation split to fit on, so
    it takes the temperature of the run its recipe was chosen on. That is an approximation, and the
    stored ``fitted_on`` says so.

    Returns:
        The calibration record written (``temperature`` included).

    Raises:
        CheckpointError: ``source`` was never calibrated, names another model or other classes, or a
            file is missing.
    """
    weights, _ = checkpoint_paths(source)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint file not found: {weights}")
    meta, target = read_checkpoint_json(source), read_checkpoint_json(checkpoint)
    # A temperature only means something for the same network and class order.
    for key in ("model", "classes"):
        if meta.get(key) != target.get(key):
            raise CheckpointError(
                f"{source} has {key} {meta.get(key)!r} but {checkpoint} has {target.get(key)!r}; "
                "a temperature can only be carried over between checkpoints of the same model and classes"
            )
    calibration = meta.get("calibration") or {}
    if not calibration.get("fitted_on"):
        raise CheckpointError(f"{source} has no fitted temperature to carry over; calibrate it first")
    sha = file_sha256(weights)
    record = calibration | {
        "fitted_on": f"{calibration['fitted_on']} of another checkpoint (sha256 {sha[:16]}), carried over unchanged",
        CARRIED_OVER_KEY: sha,
    }
    update_checkpoint_meta(checkpoint, temperature=meta["temperature"], calibration=record)
    return {"temperature": meta["temperature"], **record}
