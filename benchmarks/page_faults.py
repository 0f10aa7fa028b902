"""Why ``brainxai bench`` measured classify slower than classify + Grad-CAM: page faults, per call.

Each configuration runs in a fresh interpreter (the allocator's state is the point), classifies one
sample scan at a time with the torch backend (as the bench's first figure did), then runs one batch of
32 (the bench's second figure), then classifies again, and times Grad-CAM last. For every phase it
records minor page faults per call (``getrusage``, independent of other load on the host), the
process CPU time per call (user + system, which includes the kernel's page zeroing) and the wall time.

    python benchmarks/page_faults.py --out benchmarks/page_faults

Configurations: glibc's defaults (``BRAINXAI_KEEP_FREED_HEAP=0``) and brainxai's pinned thresholds
(``brainxai.util.heap.keep_freed_heap``, the default); ``--threads`` sets torch's threads (default:
torch's own choice, as in the bench).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
if int(sys.argv[1]) > 0:
    torch.set_num_threads(int(sys.argv[1]))
from brainxai.explain import create_explainer
from brainxai.inference import Classifier
from brainxai.io.raster import read_raster
from brainxai.pipeline.demo import sample_scans

scans = [read_raster(p) for p in sample_scans().values()]
clf = Classifier.load(device="cpu", backend="torch")
k = iter(range(10**9))

def one():
    clf.predict_proba_prepared(clf.prepare(scans[next(k) % len(scans)])[None])

def phase(fn, n):
    faults, cpu, wall = [], [], []
    for _ in range(n):
        f0, c0, w0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time(), time.perf_counter()
        fn()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return {"faults_per_call": float(np.median(faults)), "cpu_ms": float(np.median(cpu)),
            "wall_ms": float(np.median(wall)), "n": n}

out = {}
for _ in range(2):  # the old bench's two warm-up calls
    one()
out["classify, fresh process (bench's first figure)"] = phase(one, 20)
batch = np.stack([clf.prepare(scans[i % len(scans)]) for i in range(32)])
out["batch of 32 (bench's second figure)"] = phase(lambda: clf.predict_proba_prepared(batch), 2)
out["classify, after the batch of 32"] = phase(one, 20)
cam = create_explainer("gradcam", clf.model)
explain = lambda: cam.explain(clf.tensor(clf.prepare(scans[0])[None]))
out["classify + gradcam, after the batch of 32"] = phase(explain, 20)
print(json.dumps(out))
"""

CONFIGS = {"glibc defaults (before)": "0", "keep_freed_heap (after)": "1"}


def run(threads: int) -> dict[str, Any]:
    """Each configuration in a fresh process; returns ``{config: {phase: figures}}``."""
    result: dict[str, Any] = {"threads": threads, "configs": {}}
    for name, flag in CONFIGS.items():
        env = os.environ | {"BRAINXAI_KEEP_FREED_HEAP": flag}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(threads)], env=env, capture_output=True, text=True, check=True
        )
        result["configs"][name] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average_end"] = list(os.getloadavg())
    return result


def to_markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"Command: `{command}` (torch threads: {result['threads'] or 'default'}; host load average at the end: "
        f"{', '.join(f'{v:.2f}' for v in result['load_average_end'])})",
        "",
        "| allocator | phase | page faults / call | CPU ms / call | wall ms / call |",
        "|---|---|---|---|---|",
    ]
    for config, phases in result["configs"].items():
        for phase, f in phases.items():
            lines.append(
                f"| {config} | {phase} | {f['faults_per_call']:.0f} | {f['cpu_ms']:.1f} | {f['wall_ms']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/page_faults"))
    args = ap.parse_args(argv)
    result = run(args.threads)
    command = "python benchmarks/page_faults.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["command"] = command
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result, command)
    args.out.with_suffix(".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
