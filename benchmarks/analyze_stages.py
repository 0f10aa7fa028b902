"""Where the time of ``AnalysisService.analyze`` (LRP + agreement + PDF report) goes, stage by stage.

Wraps the pipeline's stage functions with timers and analyses the bundled sample scans in turn
(after one warm-up pass over them); prints the median wall time per analysis of each stage. Stages
run inside others (``build_report`` inside ``write_report_and_json``) are indented. To time another
source tree (e.g. the last commit, for a before/after), put its ``src`` first on ``PYTHONPATH``:

    python benchmarks/analyze_stages.py --rounds 3 --out benchmarks/analyze_stages
    git archive HEAD src | tar -x -C /tmp/old && \
        PYTHONPATH=/tmp/old/src python benchmarks/analyze_stages.py --rounds 3 --out /tmp/before
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# (module, function, label); a stage missing from the timed tree is skipped.
STAGES = (
    ("brainxai.pipeline.steps", "read", "read (decode)"),
    ("brainxai.pipeline.steps", "prepare", "prepare (crop, resize)"),
    ("brainxai.pipeline.steps", "classify", "classify"),
    ("brainxai.pipeline.steps", "assess", "classify (+ domain score)"),
    ("brainxai.pipeline.steps", "explain", "explain (LRP, + Grad-CAM for a tumour)"),
    ("brainxai.pipeline.measure", "locate", "locate regions"),
    ("brainxai.pipeline.measure", "agreement", "agreement"),
    ("brainxai.pipeline.measure", "spatial_parameters", "spatial parameters"),
    ("brainxai.pipeline.outputs", "render", "render images"),
    ("brainxai.pipeline.outputs", "write_images", "write PNGs"),
    ("brainxai.pipeline.outputs", "start_writing_images", "start writing PNGs (background)"),
    ("brainxai.pipeline.outputs", "write_report_and_json", "PDF + JSON"),
    ("brainxai.reporting.pdf", "build_report", "  of which: build the PDF"),
)


def _wrap(acc: dict[str, list[float]], owner: Any, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[label].append((time.perf_counter() - t) * 1000)

    setattr(owner, name, timed)


def run(rounds: int) -> dict[str, Any]:
    import importlib

    import brainxai
    from brainxai.pipeline.demo import sample_scans
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    acc: dict[str, list[float]] = collections.defaultdict(list)
    for module, name, label in STAGES:
        owner = importlib.import_module(module)
        if hasattr(owner, name):
            _wrap(acc, owner, name, label)
    _wrap(acc, AnalysisService, "analyze", "TOTAL analyze")
    paths = list(sample_scans().values())
    service = AnalysisService(None, device="cpu")
    options = AnalysisOptions(method="lrp", report=True)
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:  # warm-up
            service.analyze(p, options, out_dir=tmp)
        acc.clear()
        for _ in range(rounds):
            for p in paths:
                service.analyze(p, options, out_dir=tmp)
    n = rounds * len(paths)
    # Per analysis: a stage called twice in one analysis (explain for the agreement) counts twice.
    per_analysis = {label: float(np.sum(v)) / n for label, v in acc.items()}
    total = per_analysis.pop("TOTAL analyze")
    return {
        "source": str(Path(brainxai.__file__).parent),
        "analyses": n,
        "stages_ms_mean": per_analysis,
        "total_ms_median": float(np.median(acc["TOTAL analyze"])),
        "total_ms_mean": total,
        "load_average_end": list(os.getloadavg()),
    }


def to_markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"Command: `{command}`; source `{result['source']}`, {result['analyses']} analyses "
        f"(host load average at the end: {', '.join(f'{v:.2f}' for v in result['load_average_end'])})",
        "",
        "| stage | ms per analysis (mean) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["stages_ms_mean"].items()]
    lines.append(f"| **total** (median / mean) | {result['total_ms_median']:.1f} / {result['total_ms_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="Passes over the sample scans.")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/analyze_stages"))
    args = ap.parse_args(argv)
    result = run(args.rounds)
    command = "python benchmarks/analyze_stages.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result["command"] = command
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result, command)
    args.out.with_suffix(".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
