"""Should the default model average its logits over the scan and its mirror image? Decided on validation only.

The shipped model's own 5% validation split holds 286 images and one error, too few to judge a change
of one or two errors. The round-1 candidates of the default-model sweep
(``candidates.md`` in this folder) were trained with the same code on an 80/20 split of
Training (seed 0), so their 20% validation split (1,142 images, 11 to 15 errors per model) can. Testing
is never read here.

Decision rule, written down before this script was first run:
    Adopt horizontal-flip test-time augmentation (mean of the logits of the scan and of its mirror
    image) for the default model if, on that 20% validation split, it lowers the number of errors
    summed over the round-1 models, and does not raise the errors of the round-1 model with the
    shipped recipe (c3). A tie is not an improvement: the flip doubles the cost of a prediction.

Usage:
    python experiments/default_model_selection/tta_validation.py --data ../shared/data/brain-tumor-mri \
        --checkpoint c1=RUN/c1/best --checkpoint c3=RUN/c3/best ... \
        --out experiments/default_model_selection

Writes ``tta_validation.json`` and ``tta_validation.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _validation import (
    add_member_arguments,
    command_line,
    decision_line,
    error_count,
    member_specs,
    own_validation_split,
    write_study,
)

from brainxai.evaluation.calibration import nll
from brainxai.inference import Classifier


def evaluate(name: str, checkpoint: str, data: str, cache_dir: str | None) -> dict:
    """Errors and NLL (temperature 1) of one checkpoint on its own validation split, plain and flip-averaged."""
    loaded, images, labels, _ = own_validation_split(checkpoint, data, cache_dir)
    classifier = Classifier(loaded, device="cpu")
    plain = classifier.logits_prepared(images)
    mirrored = classifier.logits_prepared(np.ascontiguousarray(images[:, :, ::-1]))
    tta = (plain + mirrored) / 2
    row = {"candidate": name, "n_val": int(len(labels)), "hflip_in_training": bool(loaded.meta.recipe.get("hflip"))}
    for key, logits in (("plain", plain), ("mirror_only", mirrored), ("flip_tta", tta)):
        row[f"{key}_errors"] = error_count(logits, labels)
        row[f"{key}_nll"] = round(nll(logits, labels), 4)
    row["changed_predictions"] = int((plain.argmax(1) != tta.argmax(1)).sum())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_member_arguments(parser)
    parser.add_argument("--shipped-recipe", default="c3", help="the candidate with the shipped recipe")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = [evaluate(name, path, args.data, args.cache_dir) for name, path in member_specs(args.checkpoint)]
    total_plain = sum(r["plain_errors"] for r in rows)
    total_tta = sum(r["flip_tta_errors"] for r in rows)
    shipped = next(r for r in rows if r["candidate"] == args.shipped_recipe)
    adopt = total_tta < total_plain and shipped["flip_tta_errors"] <= shipped["plain_errors"]
    result = {
        "rule": "adopt flip TTA iff summed validation errors drop and the shipped recipe's errors do not rise",
        "rows": rows,
        "total_plain_errors": total_plain,
        "total_flip_tta_errors": total_tta,
        "adopt_flip_tta": adopt,
    }
    lines = [
        "# Flip test-time augmentation, judged on validation",
        "",
        "Round-1 candidates of the default-model sweep on their own 20% validation split of Training "
        "(seed 0). Errors and negative log-likelihood at temperature 1; `flip TTA` averages the logits of the "
        "scan and of its mirror image. Testing is not used.",
        "",
        command_line("tta_validation.py"),
        "",
        (
            "| candidate | flips in training | n | errors plain | errors mirror only | errors flip TTA "
            "| NLL plain | NLL flip TTA | predictions changed |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['candidate']} | {'yes' if r['hflip_in_training'] else 'no'} | {r['n_val']} | {r['plain_errors']} | "
            f"{r['mirror_only_errors']} | {r['flip_tta_errors']} | {r['plain_nll']} | {r['flip_tta_nll']} | "
            f"{r['changed_predictions']} |"
        )
    lines += [
        f"| **total** | | | **{total_plain}** | | **{total_tta}** | | | |",
        "",
        decision_line(result["rule"], adopt),
    ]
    write_study(args.out, "tta_validation", result, lines)


if __name__ == "__main__":
    main()
