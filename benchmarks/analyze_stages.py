"""Where the time of ``AnalysisService.analyze`` (LRP + agreement + PDF report) goes, stage by stage.

Wraps the pipeline's stage functions with timers and analyses the bundled sample scans in turn
(after one warm-up pass over them); prints the mean wall time and CPU time per analysis of each
stage: the CPU time of the thread that ran it (``time.thread_time``: less sensitive than wall time to
other processes on a shared host; work the stage hands to other threads is not in it) and the whole
process's (``time.process_time``: includes background threads, e.g. PNG writes during the PDF build).
Stages run inside others (``build_report`` inside ``write_report_and_json``) are indented. To time another
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

# (module, function or Class.method, label); a stage missing from the timed tree is skipped.
STAGES = (
    ("brainxai.pipeline.steps", "read", "read (decode)"),
    ("brainxai.pipeline.steps", "prepare", "prepare (crop, resize)"),
    ("brainxai.pipeline.steps", "classify", "classify"),
    ("brainxai.pipeline.steps", "assess", "classify (+ domain score)"),
    ("brainxai.pipeline.steps", "assess_and_explain", "classify + explain (one LRP pass, + domain score)"),
    ("brainxai.pipeline.steps", "explain", "  of which: explain (LRP)"),
    ("brainxai.pipeline.steps", "explain_again", "Grad-CAM for the agreement (from the LRP pass's activations)"),
    ("brainxai.pipeline.measure", "locate", "locate regions"),
    ("brainxai.pipeline.service", "AnalysisService._start_segmenting", "start segmenting (a worker thread on ONNX)"),
    ("brainxai.pipeline.measure", "agreement", "agreement"),
    ("brainxai.pipeline.measure", "spearman", "  of which: Spearman"),
    ("brainxai.pipeline.service", "AnalysisService._segment", "segmentation (waits for its mask, then measures)"),
    ("brainxai.pipeline.segment", "segment", "  of which: measure the tumour (segments too when no mask is given)"),
    ("brainxai.pipeline.measure", "spatial_parameters", "spatial parameters"),
    ("brainxai.pipeline.outputs", "render", "render images"),
    ("brainxai.pipeline.outputs", "write_images", "write PNGs"),
    ("brainxai.pipeline.outputs", "start_writing_images", "start writing PNGs (background)"),
    ("brainxai.pipeline.outputs", "write_report_and_json", "PDF + JSON"),
    ("brainxai.reporting.pdf", "build_report", "  of which: build the PDF"),
)


def _wrap(acc: dict[str, list[tuple[float, float, float]]], owner: Any, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t, c, p = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            now = (time.perf_counter(), time.thread_time(), time.process_time())
            acc[label].append(((now[0] - t) * 1000, (now[1] - c) * 1000, (now[2] - p) * 1000))

    setattr(owner, name, timed)


def run(rounds: int) -> dict[str, Any]:
    import importlib

    import brainxai
    from brainxai.pipeline.demo import sample_scans
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    acc: dict[str, list[tuple[float, float, float]]] = collections.defaultdict(list)
    for module, path, label in STAGES:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")  # "Class.method" wraps a method
        for part in parents:
            owner = getattr(owner, part, None)
        if owner is not None and hasattr(owner, name):
            _wrap(acc, owner, name, label)
    _wrap(acc, AnalysisService, "analyze", "TOTAL analyze")
    paths = list(sample_scans().values())
    load_start = list(os.getloadavg())
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
    per_analysis = {label: np.sum(np.array(v), axis=0) / n for label, v in acc.items()}
    total = per_analysis.pop("TOTAL analyze")
    totals = np.array(acc["TOTAL analyze"])
    return {
        "source": str(Path(brainxai.__file__).parent),
        "analyses": n,
        "stages_ms_mean": {k: float(v[0]) for k, v in per_analysis.items()},
        "stages_thread_cpu_ms_mean": {k: float(v[1]) for k, v in per_analysis.items()},
        "stages_process_cpu_ms_mean": {k: float(v[2]) for k, v in per_analysis.items()},
        "total_ms_median": float(np.median(totals[:, 0])),
        "total_ms_mean": float(total[0]),
        "total_thread_cpu_ms_median": float(np.median(totals[:, 1])),
        "total_process_cpu_ms_median": float(np.median(totals[:, 2])),
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
    }


def to_markdown(result: dict[str, Any], command: str) -> str:
    def loads(key: str) -> str:
        return ", ".join(f"{v:.2f}" for v in result.get(key) or [])

    lines = [
        f"Command: `{command}`; source `{result['source']}`, {result['analyses']} analyses "
        f"(host load averages at the start: {loads('load_average_start')}; at the end: {loads('load_average_end')})",
        "",
        "ms per analysis (mean); CPU: of the thread that ran the stage, and of the whole process",
        "",
        "| stage | wall | thread CPU | process CPU |",
        "|---|---|---|---|",
    ]
    cpu, pcpu = result["stages_thread_cpu_ms_mean"], result["stages_process_cpu_ms_mean"]
    lines += [f"| {k} | {v:.1f} | {cpu[k]:.1f} | {pcpu[k]:.1f} |" for k, v in result["stages_ms_mean"].items()]
    lines.append(
        f"| **total** (median; wall also mean) | {result['total_ms_median']:.1f} / {result['total_ms_mean']:.1f} "
        f"| {result['total_thread_cpu_ms_median']:.1f} | {result['total_process_cpu_ms_median']:.1f} |"
    )
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
