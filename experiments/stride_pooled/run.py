"""One-off (issue 25): Flat against UniformFlat as LRP's first layer, on figshare-dev and BRISC masks pooled.

Rule and protocol: README.md. Scores with ``../stride_masks/run.py``'s own functions (loaded from its file), so
the two runs score the same way; the default composite is not changed by this script.

    OMP_NUM_THREADS=2 python experiments/stride_pooled/run.py --figshare ../shared/data/figshare-masks-dev \
        --brisc ../shared/data/brisc-masks-dev --out experiments/stride_pooled
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from brainxai.inference import Classifier
from brainxai.xai_benchmark.data import read_boxes

_spec = importlib.util.spec_from_file_location("stride_masks_run", Path(__file__).parent.parent / "stride_masks/run.py")
assert _spec is not None and _spec.loader is not None
stride = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stride)

logger = logging.getLogger(__name__)
KEYS = ("pointing_game_mask", "energy_in_mask", "grid_s2")


def brisc_tumour_csv(root: Path, tmp: Path) -> Path:
    """BRISC's tumour rows (its no-tumour rows have no mask) as a CSV whose paths point into ``root``."""
    with open(root / "slices.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in stride.CLASSES]
    out = tmp / "slices.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "mask", "label", "patient", "x0", "y0", "x1", "y1"])
        w.writeheader()
        for r in rows:  # no patient IDs in BRISC: each slice is its own group
            mask = cv2.imread(str(root / r["mask"]), cv2.IMREAD_GRAYSCALE)
            ys, xs = np.nonzero(mask)
            if not len(xs):
                logger.warning("%s: empty mask, left out", r["mask"])
                continue
            # The box only satisfies the box CSV's columns; the scores here use the mask.
            box = {"x0": xs.min(), "y0": ys.min(), "x1": xs.max() + 1, "y1": ys.max() + 1}
            group = Path(r["file"]).name
            w.writerow({"file": r["file"], "mask": r["mask"], "label": r["label"], "patient": group, **box})
    return out


def rows_of(classifier: Classifier, csv_path: Path, root: Path, source: str, limit: int | None) -> dict[str, list]:
    records = read_boxes(csv_path, root)[:limit]
    with open(csv_path, newline="") as f:
        patients = {Path(r["file"]).name: f"{source}:{r['patient']}" for r in csv.DictReader(f)}
    rows = stride.score(classifier, records, list(classifier.classes), patients)
    for variant in rows.values():
        for r in variant:
            r["source"] = source
    return rows


def table(rows: dict[str, list]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        out[key] = {"all": stride.paired(rows["Flat"], rows["UniformFlat"], key)}
        for c in stride.CLASSES:
            sel = [i for i, r in enumerate(rows["Flat"]) if r["label"] == c]
            if sel:
                out[key][c] = stride.paired([rows["Flat"][i] for i in sel], [rows["UniformFlat"][i] for i in sel], key)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figshare", type=Path, required=True)
    ap.add_argument("--brisc", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("experiments/stride_pooled"))
    ap.add_argument("--limit", type=int, default=None, help="first N slices of each set only (a smoke run)")
    args = ap.parse_args()
    classifier = Classifier.load(None, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        brisc_csv = brisc_tumour_csv(args.brisc, Path(tmp))
        parts = {
            "figshare": rows_of(classifier, args.figshare / "slices.csv", args.figshare, "figshare", args.limit),
            "brisc": rows_of(classifier, brisc_csv, args.brisc, "brisc", args.limit),
        }
    pooled = {v: parts["figshare"][v] + parts["brisc"][v] for v in stride.VARIANTS}
    tables = {"pooled": table(pooled), **{name: table(rows) for name, rows in parts.items()}}
    pg, en = tables["pooled"]["pointing_game_mask"], tables["pooled"]["energy_in_mask"]
    checks = {
        "pooled_pointing_and_energy": all(t["all"]["ci"][1] >= 0 and t["all"]["diff"] >= -0.005 for t in (pg, en)),
        "pooled_per_class_pointing": all(pg[c]["diff"] >= -0.02 for c in stride.CLASSES if c in pg),
        "brisc_pointing": tables["brisc"]["pointing_game_mask"]["all"]["diff"] >= -0.01,
    }
    result = {
        "command": "OMP_NUM_THREADS=2 python " + shlex.join(["experiments/stride_pooled/run.py", *sys.argv[1:]]),
        "n": {name: len(rows["Flat"]) for name, rows in parts.items()},
        "lrp_ms_per_image": {name: {v: rows[v][0]["lrp_ms"] for v in stride.VARIANTS} for name, rows in parts.items()},
        "checks": checks,
        "adopt_uniform_flat": all(checks.values()),
        "metrics": tables,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(args.out / "per_slice.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "file", "label", "group", *(f"{k}_{v}" for v in stride.VARIANTS for k in KEYS)])
        for a, b in zip(pooled["Flat"], pooled["UniformFlat"], strict=True):
            w.writerow(
                [a["source"], a["file"], a["label"], a["patient"], *(f"{r[k]:.6g}" for r in (a, b) for k in KEYS)]
            )
    print(json.dumps({k: v for k, v in result.items() if k != "metrics"}, indent=1))
    for name, t in tables.items():
        for key, per in t.items():
            for c, r in per.items():
                print(
                    f"{name:8s} {key:20s} {c:10s} Flat {r['flat']:.4f}  Uniform {r['uniform']:.4f}  "
                    f"diff {r['diff']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] n={r['n']}"
                )


if __name__ == "__main__":
    main()
