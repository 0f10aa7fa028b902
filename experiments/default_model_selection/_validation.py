"""Helpers shared by the validation-only decisions (flip TTA, ensemble, weight average): members named on the
command line, a checkpoint's own validation split, float16 rounding of parameters, the members' table, the
adoption rule of the two combinations and the writing of a study's JSON and Markdown."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.evaluation.calibration import nll
from brainxai.models.checkpoint import LoadedCheckpoint, load_checkpoint
from brainxai.training.split import TrainingSplit, training_split

MIN_GAIN = 2  # errors fewer than the best member, for adopting a combination of members


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every study takes: ``--data``, ``--checkpoint NAME=CHECKPOINT`` (repeated), ``--cache-dir``."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", action="append", required=True, help="NAME=CHECKPOINT (repeat)")
    parser.add_argument("--cache-dir", default=".cache/brainxai")


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
        data,
        loaded.preprocess,
        val_fraction=recipe["val_fraction"],
        seed=recipe["seed"],
        limit_per_class=recipe.get("limit_per_class"),
        cache_dir=cache_dir,
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


def error_count(logits: np.ndarray, labels: np.ndarray) -> int:
    """How many arg-max predictions differ from ``labels``."""
    return int((logits.argmax(1) != labels).sum())


def member_row(name: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """One member's errors and NLL (temperature 1), as the members' table and JSON list them."""
    return {"member": name, "errors": error_count(logits, labels), "nll": round(nll(logits, labels), 4)}


def beats_members(errors: int, rows: list[dict[str, Any]], half_changes: int) -> bool:
    """The rule of both combinations: at least ``MIN_GAIN`` errors fewer than the best member, and float16
    parameters changing no validation prediction."""
    return errors <= min(r["errors"] for r in rows) - MIN_GAIN and half_changes == 0


def members_table(rows: list[dict[str, Any]], n: int) -> list[str]:
    """Markdown header and one line per member: model, n, errors, NLL."""
    return ["| model | n | errors | NLL |", "|---|---|---|---|"] + [
        f"| {r['member']} | {n} | {r['errors']} | {r['nll']} |" for r in rows
    ]


def command_line(script: str) -> str:
    """The command that ran ``script`` (a file of this folder), with this run's arguments."""
    return f"Command: `python experiments/default_model_selection/{script} " + " ".join(sys.argv[1:]) + "`"


def decision_line(rule: str, adopt: bool) -> str:
    """The closing line of a study's Markdown: its rule and what it decided."""
    return f"Rule (fixed before the first run): {rule}. Decision: **{'adopt' if adopt else 'do not adopt'}**."


def write_study(out: str | Path, stem: str, result: dict[str, Any], lines: list[str]) -> None:
    """Writes ``STEM.json`` and ``STEM.md`` in ``out`` and prints the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
