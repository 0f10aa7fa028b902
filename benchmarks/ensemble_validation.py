"""Should the default model be an ensemble of the three round-2 recipes? Decided on validation only.

The round-1 candidates of the default-model sweep (``benchmarks/default_model/candidates.md``) were
trained on one 80/20 split of Training (seed 0); their 20% validation split (1,142 images) is large
enough to count errors. Testing is never read here.

Decision rule, written down and committed before this script was first run:
    Candidate: the mean of the raw logits of c3, c4 and c5, the three recipes that round-1 validation
    carried into round 2. A mean of logits keeps the ensemble one network whose output is linear in
    its members' outputs, so every explanation method applies to it unchanged. Adopt it iff, on the
    round-1 validation split, it makes at least two fewer errors than the best of its members and
    its weights stored in half precision (needed to stay under 30 MB) change no validation
    prediction. A one-image gain is not enough: the ensemble triples the cost of a prediction.
    If adopted, the shipped ensemble has each recipe's model trained on the most data (the shipped
    refit of c3; round-2 c4 and c5) and the temperature fitted here on the round-1 ensemble's
    validation logits, carried over like the refit's; it then ships whatever its Testing score.
    The members' own Testing scores were already known when this was proposed, which is why the
    decision is fixed on validation and the Testing result reported whatever it is.

Usage:
    python benchmarks/ensemble_validation.py --data ../shared/data/brain-tumor-mri \
        --checkpoint c3=RUN/c3/best --checkpoint c4=RUN/c4/best --checkpoint c5=RUN/c5/best \
        --out benchmarks/default_model/ensemble_validation

Writes ``ensemble_validation.json`` and ``ensemble_validation.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from _validation import member_specs, own_validation_split, round_to_half

from brainxai.evaluation.calibration import fit_temperature, nll
from brainxai.inference import Classifier

MIN_GAIN = 2  # errors fewer than the best member, for adoption


def member_logits(checkpoint: str, data: str, cache_dir: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One round-1 checkpoint on its own validation split: logits, logits with the parameters rounded to
    float16 and back (as a half-precision file would store them; BatchNorm running statistics, buffers,
    stay float32), labels and validation indices."""
    loaded, images, labels, idx = own_validation_split(checkpoint, data, cache_dir)
    full = Classifier(loaded, device="cpu").logits_prepared(images)
    # Classifier classifies a BatchNorm-folded copy, so rounding the loaded model afterwards is safe.
    round_to_half(loaded.model)
    half = Classifier(loaded, device="cpu").logits_prepared(images)
    return full, half, labels, idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", action="append", required=True, help="NAME=CHECKPOINT (repeat)")
    parser.add_argument("--cache-dir", default=".cache/brainxai")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    names, full, half = [], [], []
    labels = val_idx = None
    for name, path in member_specs(args.checkpoint):
        logits, logits_half, y, idx = member_logits(path, args.data, args.cache_dir)
        if labels is None:
            labels, val_idx = y, idx
        elif not (np.array_equal(labels, y) and np.array_equal(val_idx, idx)):
            raise SystemExit(f"{name} was validated on another split; the members must share one")
        names.append(name)
        full.append(logits)
        half.append(logits_half)

    rows = [
        {"member": n, "errors": int((lg.argmax(1) != labels).sum()), "nll": round(nll(lg, labels), 4)}
        for n, lg in zip(names, full)
    ]
    ensemble = np.mean(full, axis=0)
    ensemble_half = np.mean(half, axis=0)
    errors = int((ensemble.argmax(1) != labels).sum())
    best_member = min(r["errors"] for r in rows)
    half_changes = int((ensemble.argmax(1) != ensemble_half.argmax(1)).sum())
    temperature = fit_temperature(ensemble, labels)
    adopt = errors <= best_member - MIN_GAIN and half_changes == 0
    wrong = np.flatnonzero(ensemble.argmax(1) != labels)
    result = {
        "rule": f"adopt the logit-mean ensemble iff its validation errors <= best member's - {MIN_GAIN} "
                "and float16 weights change no validation prediction",
        "n_val": int(len(labels)),
        "members": rows,
        "ensemble_errors": errors,
        "ensemble_nll": round(nll(ensemble, labels), 4),
        "ensemble_temperature": round(float(temperature), 4),
        "ensemble_nll_at_temperature": round(nll(ensemble / temperature, labels), 4),
        "float16_prediction_changes": half_changes,
        "ensemble_wrong_val_positions": wrong.tolist(),
        "adopt_ensemble": adopt,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensemble_validation.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Logit-mean ensemble of the round-2 recipes, judged on validation",
        "",
        "Round-1 checkpoints of c3, c4 and c5 on their shared 20% validation split of Training (seed 0). "
        "Errors and negative log-likelihood at temperature 1. Testing is not used.",
        "",
        "Command: `python benchmarks/ensemble_validation.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| model | n | errors | NLL |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['member']} | {len(labels)} | {r['errors']} | {r['nll']} |" for r in rows]
    lines += [
        f"| **mean of logits** | {len(labels)} | **{errors}** | {result['ensemble_nll']} |",
        "",
        f"- Predictions changed by storing the weights in float16: {half_changes}.",
        f"- Temperature fitted on the ensemble's validation logits: {result['ensemble_temperature']} "
        f"(NLL {result['ensemble_nll']} -> {result['ensemble_nll_at_temperature']}).",
        "",
        f"Rule (fixed before the first run): {result['rule']}. Decision: **{'adopt' if adopt else 'do not adopt'}**.",
    ]
    (out / "ensemble_validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
