"""Stride-grid energy of every explanation method on the box images, at model-input resolution.

The figure is :func:`brainxai.explain.quality.grid_energy`: the share of a map's spectral energy
(DC removed) within 1/32 cycle/pixel of the 2-pixel lattice frequencies (stride 2: (0, 1/2), (1/2, 0),
(1/2, 1/2)) and, as a second column, of the 4-pixel lattice (stride 4, which includes the stride-2
frequencies). A smooth map scores about 0, a checkerboard 1, white noise about 0.012 (stride 2) and
0.06 (stride 4). The maps are the raw relevance of the predicted class on the 224-pixel model input,
before they are placed on the scan, so no resampling touches them.

Usage:
  OMP_NUM_THREADS=1 python benchmarks/stride_grid.py --boxes ../shared/data/figshare-boxes-dev/boxes.csv \\
      --label before [--methods lrp gradcam ...] [--composites epsilon-plus-flat ...] \\
      [--out benchmarks/xai/stride_grid]

Results of each ``--label`` are kept in ``<out>.json`` next to earlier labels, and ``<out>.md`` is
rewritten from all of them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.explain.base import create_explainer, list_explainers
from brainxai.explain.lrp import COMPOSITES
from brainxai.explain.quality import GRID_BANDWIDTH, grid_energy
from brainxai.inference import Classifier
from brainxai.pipeline import steps
from brainxai.xai_benchmark.data import load_box_images, read_boxes


def _variants(methods: list[str], composites: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    out: list[tuple[str, str, dict[str, Any]]] = []
    for method in methods:
        if method == "lrp":
            out += [(f"lrp ({c})", "lrp", {"composite": c}) for c in composites]
        else:
            out.append((method, method, {}))
    return out


def _measure(classifier: Classifier, images: list[Any], targets: list[int], method: str, options: dict) -> dict:
    maps = []
    t0 = time.perf_counter()
    with create_explainer(method, classifier.model, **options) as explainer:
        for start in range(0, len(images), 8):
            batch = images[start : start + 8]
            maps += [e.relevance for e in steps.explain(explainer, classifier, batch, targets[start : start + 8])]
    g2 = np.array([grid_energy(m, stride=2) for m in maps])
    g4 = np.array([grid_energy(m, stride=4) for m in maps])
    return {
        "grid_energy_s2_mean": float(g2.mean()),
        "grid_energy_s2_median": float(np.median(g2)),
        "grid_energy_s4_mean": float(g4.mean()),
        "grid_energy_s4_median": float(np.median(g4)),
        "seconds": round(time.perf_counter() - t0, 1),
        "per_image_s2": [round(float(v), 5) for v in g2],
    }


def _markdown(runs: dict[str, Any]) -> str:
    lines = [
        "# Stride-grid energy of the explanation maps",
        "",
        "Share of each map's spectral energy (2-D FFT power, DC removed) within "
        f"{GRID_BANDWIDTH:.4f} cycle/pixel of the stride-2 lattice frequencies (0, 1/2), (1/2, 0), (1/2, 1/2) "
        "(`s2`), and of the stride-4 lattice (`s4`, includes `s2`); raw maps of the predicted class at the "
        "224-pixel model input (`brainxai.explain.quality.grid_energy`). Smooth map ~0, checkerboard 1, "
        "white noise ~0.012 (s2) / ~0.06 (s4). Lower is better.",
        "",
    ]
    for label, run in runs.items():
        lines += [f"## {label}", "", f"Command: `{run['command']}`", "", f"Images: {run['n_images']}", ""]
        lines += ["| method | s2 mean | s2 median | s4 mean | s4 median |", "|---|---|---|---|---|"]
        for name, r in run["methods"].items():
            lines.append(
                f"| {name} | {r['grid_energy_s2_mean']:.4f} | {r['grid_energy_s2_median']:.4f} "
                f"| {r['grid_energy_s4_mean']:.4f} | {r['grid_energy_s4_median']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", required=True, type=Path)
    parser.add_argument("--label", default="run")
    parser.add_argument("--methods", nargs="+", default=list_explainers())
    parser.add_argument("--composites", nargs="+", default=list(COMPOSITES))
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/xai/stride_grid"))
    args = parser.parse_args()

    classifier = Classifier.load(args.checkpoint, device="cpu")
    data = load_box_images(read_boxes(args.boxes), classifier)
    targets = [int(t) for t in steps.classify(classifier, data.images).argmax(axis=1)]
    results = {}
    for name, method, options in _variants(args.methods, args.composites):
        results[name] = _measure(classifier, data.images, targets, method, options)
        r = results[name]
        print(
            f"{name:32s} s2 {r['grid_energy_s2_mean']:.4f} (median {r['grid_energy_s2_median']:.4f})  "
            f"s4 {r['grid_energy_s4_mean']:.4f}  [{r['seconds']} s]",
            flush=True,
        )
    json_path = args.out.with_suffix(".json")
    runs = json.loads(json_path.read_text()) if json_path.exists() else {}
    command = "OMP_NUM_THREADS=1 python " + shlex.join(["benchmarks/stride_grid.py", *sys.argv[1:]])
    runs[args.label] = {"command": command, "n_images": len(data.images), "methods": results}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(runs, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(runs))


if __name__ == "__main__":
    main()
