"""Which `figshare-masks-dev` slices the shipped model was not trained on: the subsets for `xai_masks/`.

The shipped model was trained on all of Kaggle `brain-tumor-mri/Training` (its recipe: `val_fraction` 0),
which holds left-right-flipped (and SARTAJ's unflipped) copies of figshare slices.
`experiments/source_derivation/sources.csv` names, for each Kaggle image, the `figshare-masks-dev` slice it
copies (`figshare_dev_slice`, found by pHash of the plain and of the flipped image, <= 2 bits). From it:

- `held_out_patients.csv`: slices of the patients none of whose slices has a copy in `Training`
  (the issue's "patients held out of training");
- `unseen_slices.csv`: slices that have no copy in `Training` themselves (neighbouring slices of the same
  patient may have one: a weaker sense of "held out");
- `sample.csv`: the benchmark's input, the held-out patients' slices if there are any, else the unseen
  slices; when more than `--max` rows, a stratified (by label, proportional, largest remainder) sample
  drawn with `--seed`;
- `subset.json`: the counts and these definitions.

All CSVs keep the `slices.csv` layout (file,mask,label,patient,width,height,x0,y0,x1,y1), paths relative to
`figshare-masks-dev/` (pass it as `--images-root`). No image is copied.

Run from the repository root:

    python benchmarks/xai_masks/make_subset.py
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

FIELDS = ["file", "mask", "label", "patient", "width", "height", "x0", "y0", "x1", "y1"]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: (r["label"], r["file"])))


def stratified_sample(rows: list[dict[str, str]], k: int, seed: int) -> list[dict[str, str]]:
    """``k`` rows, each label's share kept (largest remainder), drawn without replacement with ``seed``."""
    if len(rows) <= k:
        return list(rows)
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: r["file"]):
        by_label.setdefault(r["label"], []).append(r)
    exact = {lab: k * len(v) / len(rows) for lab, v in by_label.items()}
    quota = {lab: int(q) for lab, q in exact.items()}
    for lab in sorted(exact, key=lambda lab: exact[lab] - quota[lab], reverse=True)[: k - sum(quota.values())]:
        quota[lab] += 1
    rng = np.random.default_rng(seed)
    out = []
    for lab in sorted(by_label):
        picked = rng.choice(len(by_label[lab]), size=quota[lab], replace=False)
        out += [by_label[lab][i] for i in sorted(picked)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=Path("experiments/source_derivation/sources.csv"))
    ap.add_argument("--slices", type=Path, default=Path("../shared/data/figshare-masks-dev/slices.csv"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/xai_masks"))
    ap.add_argument("--max", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sources = _read(args.sources)
    slices = _read(args.slices)
    in_training = {r["figshare_dev_slice"] for r in sources if r["split"] == "Training" and r["figshare_dev_slice"]}
    seen_patients = {r["patient"] for r in slices if Path(r["file"]).name in in_training}
    held_out = [r for r in slices if r["patient"] not in seen_patients]
    unseen = [r for r in slices if Path(r["file"]).name not in in_training]
    basis, basis_name = (held_out, "held_out_patients") if held_out else (unseen, "unseen_slices")
    sample = stratified_sample(basis, args.max, args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "held_out_patients.csv", held_out)
    _write(args.out / "unseen_slices.csv", unseen)
    _write(args.out / "sample.csv", sample)
    summary = {
        "command": "python benchmarks/xai_masks/make_subset.py"
        + ("" if (args.max, args.seed) == (150, 0) else f" --max {args.max} --seed {args.seed}"),
        "slices": len(slices),
        "patients": len({r["patient"] for r in slices}),
        "slices_with_a_training_copy": sum(Path(r["file"]).name in in_training for r in slices),
        "patients_with_a_training_copy": len(seen_patients),
        "held_out_patients": {"patients": len({r["patient"] for r in held_out}), "slices": len(held_out)},
        "unseen_slices": {
            "slices": len(unseen),
            "patients": len({r["patient"] for r in unseen}),
            "labels": dict(sorted(Counter(r["label"] for r in unseen).items())),
        },
        "sample": {
            "from": basis_name,
            "slices": len(sample),
            "labels": dict(sorted(Counter(r["label"] for r in sample).items())),
            "max": args.max,
            "seed": args.seed,
        },
    }
    (args.out / "subset.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
