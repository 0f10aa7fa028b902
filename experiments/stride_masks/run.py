"""One-off (issue 25): zennit's Flat against UniformFlat as LRP's first-layer rule, scored against expert masks.

Rule and protocol: README.md. Leans on library internals (``brainxai.explain.lrp.fast.build_composite``) to swap
the first-layer rule; the default composite is not changed by this script.

    OMP_NUM_THREADS=2 python experiments/stride_masks/run.py --data ../shared/data/figshare-masks-dev \
        --out experiments/stride_masks
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from zennit.composites import EpsilonPlusFlat
from zennit.types import Convolution
from zennit.types import Linear as AnyLinear

import brainxai.explain.lrp.fast as fast
from brainxai.explain.base import create_explainer
from brainxai.explain.lrp import NonNegativeZPlus, UniformFlat
from brainxai.explain.lrp.canonizers import canonizers_for
from brainxai.explain.quality import grid_energy
from brainxai.inference import Classifier
from brainxai.pipeline import steps
from brainxai.pipeline.steps import map_back
from brainxai.xai_benchmark.data import load_box_images, read_boxes
from brainxai.xai_benchmark.masks import placed_mask_metrics

CLASSES = ("glioma", "meningioma", "pituitary")
VARIANTS = ("Flat", "UniformFlat")
CHUNK = 64


@contextmanager
def first_layer(rule: str) -> Iterator[None]:
    """``epsilon-plus-flat`` with ``rule`` on the first layer while active (``Flat``: the library's own)."""
    if rule == "Flat":
        yield
        return
    original = fast.build_composite

    def build(name: str, model: Any, channels: int, epsilon: float = 1e-6) -> Any:
        assert name == "epsilon-plus-flat", name
        return EpsilonPlusFlat(
            epsilon=epsilon,
            layer_map=[(Convolution, NonNegativeZPlus(stabilizer=1e-6))],
            first_map=[(AnyLinear, UniformFlat())],
            canonizers=canonizers_for(model),
        )

    fast.build_composite = build
    try:
        yield
    finally:
        fast.build_composite = original


def score(
    classifier: Classifier, records: list[Any], classes: list[str], patients: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    seconds = dict.fromkeys(VARIANTS, 0.0)
    for start in tqdm(range(0, len(records), CHUNK), desc="slices", unit="chunk"):
        data = load_box_images(records[start : start + CHUNK], classifier)
        assert data.masks is not None
        targets = [classes.index(r.label) for r in data.records]
        for variant in VARIANTS:
            with first_layer(variant), create_explainer("lrp", classifier.model) as explainer:
                for b in range(0, len(data.images), 8):
                    t0 = time.perf_counter()
                    maps = steps.explain(explainer, classifier, data.images[b : b + 8], targets[b : b + 8])
                    seconds[variant] += time.perf_counter() - t0
                    for k, e in enumerate(maps):
                        i = b + k
                        m = placed_mask_metrics(map_back(e.relevance, data.images[i]), data.masks[i])
                        rec = data.records[i]
                        rows[variant].append(
                            {
                                "file": rec.path.name,
                                "label": rec.label,
                                "patient": patients[rec.path.name],
                                "grid_s2": grid_energy(e.relevance, stride=2),
                                **m,
                            }
                        )
    for v in VARIANTS:
        for r in rows[v]:
            r["lrp_ms"] = 1000 * seconds[v] / len(records)
    return rows


def paired(flat: list[dict[str, Any]], uniform: list[dict[str, Any]], key: str, n_boot: int = 2000) -> dict[str, Any]:
    """Mean of each and of the paired difference, with a patient-bootstrap 95% interval of the difference."""
    a = np.array([r[key] for r in flat], float)
    b = np.array([r[key] for r in uniform], float)
    patients = np.array([r["patient"] for r in flat])
    groups = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_boot):
        idx = np.concatenate([groups[j] for j in rng.integers(0, len(groups), len(groups))])
        diffs.append(float((b[idx] - a[idx]).mean()))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        "flat": float(a.mean()),
        "uniform": float(b.mean()),
        "diff": float((b - a).mean()),
        "ci": [float(lo), float(hi)],
        "n": len(a),
        "patients": len(groups),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("experiments/stride_masks"))
    ap.add_argument("--limit", type=int, default=None, help="first N slices only (a smoke run)")
    args = ap.parse_args()
    classifier = Classifier.load(None, device="cpu")
    classes = list(classifier.classes)
    records = read_boxes(args.data / "slices.csv", args.data)[: args.limit]
    with open(args.data / "slices.csv", newline="") as f:
        patients = {Path(r["file"]).name: r["patient"] for r in csv.DictReader(f)}
    rows = score(classifier, records, classes, patients)
    table: dict[str, Any] = {}
    for key in ("pointing_game_mask", "energy_in_mask", "grid_s2"):
        table[key] = {"all": paired(rows["Flat"], rows["UniformFlat"], key)}
        for c in CLASSES:
            sel = [i for i, r in enumerate(rows["Flat"]) if r["label"] == c]
            if not sel:
                continue
            table[key][c] = paired([rows["Flat"][i] for i in sel], [rows["UniformFlat"][i] for i in sel], key)
    pg, en = table["pointing_game_mask"], table["energy_in_mask"]
    adopt = all(t["all"]["ci"][1] >= 0 and t["all"]["diff"] >= -0.005 for t in (pg, en)) and all(
        pg[c]["diff"] >= -0.02 for c in CLASSES if c in pg
    )
    result = {
        "command": "OMP_NUM_THREADS=2 python " + shlex.join(["experiments/stride_masks/run.py", *sys.argv[1:]]),
        "n": len(records),
        "lrp_ms_per_image": {v: rows[v][0]["lrp_ms"] for v in VARIANTS},
        "metrics": table,
        "adopt_uniform_flat": adopt,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "metrics"}, indent=1))
    for key, t in table.items():
        for c, r in t.items():
            print(
                f"{key:20s} {c:10s} Flat {r['flat']:.4f}  Uniform {r['uniform']:.4f}  diff {r['diff']:+.4f} "
                f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] n={r['n']}"
            )


if __name__ == "__main__":
    main()
