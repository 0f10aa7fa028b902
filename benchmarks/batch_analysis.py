"""Batched analysis against one scan at a time, in one process and one run.

Two figures, both on the bundled sample scans with the shipped model:

- the LRP pass alone (``explainer.explain`` on prepared images) per image, by batch size and torch threads;
- the whole analysis per scan (``AnalysisService.analyze_many`` in batches of ``--batch``, against
  ``AnalysisService.analyze`` scan by scan), alternating the two ways round after round, with the PDF report
  and without.

Each line is a median over ``--rounds``; the ratio says how much faster the batch is. Minor page faults
per batched LRP pass are counted too (the allocator's trim threshold decides whether a batch's memory is
faulted in again every time, ``brainxai.util.heap``)::

    python benchmarks/batch_analysis.py --out benchmarks/batch_analysis
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def lrp_per_image(sizes: list[int], threads: int, rounds: int) -> dict[str, Any]:
    """Milliseconds per image of one LRP pass at each batch size, with ``threads`` torch threads."""
    import torch

    from brainxai.explain import create_explainer
    from brainxai.inference import Classifier
    from brainxai.io.raster import read_raster
    from brainxai.pipeline.demo import sample_scans

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        clf = Classifier.load(None, device="cpu")
        explainer = create_explainer("lrp", clf.model)
        scans = [read_raster(p) for p in sample_scans().values()]
        prepared = np.stack([clf.prepare(scans[i % len(scans)]) for i in range(max(sizes))])
        out: dict[str, Any] = {}
        for size in sizes:
            x = clf.tensor(prepared[:size])
            explainer.explain(x)  # warm-up
            times, faults = [], []
            for _ in range(rounds):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                explainer.explain(x)
                times.append((time.perf_counter() - t0) * 1e3 / size)
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
            out[str(size)] = {"ms_per_image": float(np.median(times)), "page_faults_median": float(np.median(faults))}
        explainer.close()
        return out
    finally:
        torch.set_num_threads(previous)


def analysis_per_scan(batch: int, rounds: int, report: bool) -> dict[str, Any]:
    """Milliseconds per scan of the whole analysis, in batches of ``batch`` and one scan at a time."""
    from brainxai.pipeline.demo import sample_scans
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService, ScanInput

    service = AnalysisService(None, device="cpu")
    files = list(sample_scans().values())
    files = [files[i % len(files)] for i in range(batch)]
    options = AnalysisOptions(report=report)
    times: dict[str, list[float]] = {"batch": [], "one at a time": []}
    with tempfile.TemporaryDirectory(prefix="brainxai-batch-") as tmp:

        def batched() -> None:
            scans = [ScanInput(f, name=f"b{i}") for i, f in enumerate(files)]
            outcomes = service.analyze_many(scans, options, out_dir=tmp)
            bad = [o for o in outcomes if isinstance(o, Exception)]
            if bad:
                raise bad[0]

        def one_by_one() -> None:
            for i, f in enumerate(files):
                service.analyze(f, options, out_dir=tmp, name=f"a{i}")

        ways = {"batch": batched, "one at a time": one_by_one}
        for fn in ways.values():  # warm-up
            fn()
        for r in range(rounds):
            for name in list(ways) if r % 2 else list(ways)[::-1]:
                t0 = time.perf_counter()
                ways[name]()
                times[name].append((time.perf_counter() - t0) * 1e3 / len(files))
    service.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"ms_per_scan": med, "speed_up": med["one at a time"] / med["batch"], "rounds": rounds}


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Batched analysis against one scan at a time",
        "",
        f"Command: `{res['command']}`. Host: {res['cpus']} CPU cores, load average {res['load_start']:.2f} at the "
        f"start, {res['load_end']:.2f} at the end. Shipped model, the bundled sample scans. Research use only.",
        "",
        "## LRP pass alone, ms per image (median)",
        "",
        "| torch threads | " + " | ".join(f"batch {s}" for s in res["lrp"][0]["by_size"]) + " |",
        "|---|" + "---|" * len(res["lrp"][0]["by_size"]),
    ]
    for row in res["lrp"]:
        cells = [f"{v['ms_per_image']:.1f} ({v['page_faults_median']:.0f} faults)" for v in row["by_size"].values()]
        lines.append(f"| {row['threads']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Whole analysis, ms per scan (median of {res['analysis'][0]['rounds']} alternating rounds)",
        "",
        "| PDF report | batch of " + str(res["batch"]) + " | one at a time | speed-up |",
        "|---|---|---|---|",
    ]
    for row in res["analysis"]:
        ms = row["ms_per_scan"]
        lines.append(
            f"| {'yes' if row['report'] else 'no'} | {ms['batch']:.1f} | {ms['one at a time']:.1f} "
            f"| {row['speed_up']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/batch_analysis"))
    ap.add_argument("--batch", type=int, default=4, help="scans per analyze_many call")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16], help="LRP batch sizes")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    import torch

    load_start = os.getloadavg()[0]
    threads = sorted({1, torch.get_num_threads()})
    res: dict[str, Any] = {
        "command": "python benchmarks/batch_analysis.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpus": os.cpu_count(),
        "batch": args.batch,
        "load_start": load_start,
        "lrp": [{"threads": t, "by_size": lrp_per_image(args.sizes, t, args.rounds)} for t in threads],
        "analysis": [
            {"report": report, **analysis_per_scan(args.batch, args.rounds, report)} for report in (False, True)
        ],
    }
    res["load_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    text = markdown(res)
    args.out.with_suffix(".md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
