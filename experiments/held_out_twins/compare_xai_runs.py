"""Compare two ``xai-benchmark`` runs on the same images: pointing-game hits per method and class.

Used for ``experiments/held_out_twins/held_out.md``: the same recipe trained with and without the box images' twins,
benchmarked on the same 60 images. Reads the two runs' ``xai_per_image.csv`` and writes a Markdown table
``hits in A → hits in B`` per method and label, the images whose hit changed, and the sum the pre-committed
rule reads (``--rule-methods`` on ``--rule-labels``).

    python experiments/held_out_twins/compare_xai_runs.py experiments/held_out_twins/held_out/with_twins_per_image.csv \
        experiments/held_out_twins/held_out/xai_per_image.csv --out experiments/held_out_twins/held_out/comparison.md
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _hits(path: Path) -> dict[tuple[str, str], tuple[str, int]]:
    with open(path, newline="") as fh:
        return {(r["method"], r["file"]): (r["label"], int(r["pointing_game"])) for r in csv.DictReader(fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="xai_per_image.csv of the first run")
    ap.add_argument("b", type=Path, help="xai_per_image.csv of the second run")
    ap.add_argument("--rule-methods", default="guided-gradcam,lrp")
    ap.add_argument("--rule-labels", default="meningioma,pituitary")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    a, b = _hits(args.a), _hits(args.b)
    if set(a) != set(b):
        raise SystemExit(f"the runs differ in their (method, image) pairs: {len(set(a) ^ set(b))} not in both")
    methods = list(dict.fromkeys(m for m, _ in a))
    labels = sorted({lab for lab, _ in a.values()})
    lines = [
        f"Pointing-game hits, `{args.a}` → `{args.b}` (images whose hit changed in brackets).",
        "",
        "| method | " + " | ".join(labels) + " | all |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for m in methods:
        cells = []
        for lab in [*labels, None]:
            keys = [k for k in a if k[0] == m and (lab is None or a[k][0] == lab)]
            changed = sum(a[k][1] != b[k][1] for k in keys)
            cells.append(f"{sum(a[k][1] for k in keys)} → {sum(b[k][1] for k in keys)} ({changed})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    rule_m, rule_l = args.rule_methods.split(","), args.rule_labels.split(",")
    keys = [k for k in a if k[0] in rule_m and a[k][0] in rule_l]
    lines += [
        "",
        f"Rule sum ({', '.join(rule_m)} on {', '.join(rule_l)}; {len(keys)} image-method pairs): "
        f"{sum(a[k][1] for k in keys)} → {sum(b[k][1] for k in keys)}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
