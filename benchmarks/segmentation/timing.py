"""Per-slice time of a segmenter (the shipped one by default) beside classify, as ``brainxai bench`` times them.

Only those two figures, interleaved (:func:`brainxai.bench.time_interleaved`), on the package's sample scans,
for each requested torch thread count; the full ``brainxai bench`` also times explanations and ``analyze``.

    python benchmarks/segmentation/timing.py --threads 1 2 --repeats 40 --out benchmarks/segmentation/timing.json

``--segmenter CHECKPOINT`` times another segmentation checkpoint the same way (e.g. a candidate recipe's fold
model, to check the issue's 30 ms target before a refit).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from brainxai.bench import Figure, _each, _segment_figure, hardware_summary, time_interleaved
from brainxai.inference import Classifier
from brainxai.io.raster import read_raster
from brainxai.pipeline.demo import sample_scans
from brainxai.segmentation import Segmenter
from brainxai.util.files import atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/segmentation/timing.json"))
    ap.add_argument("--segmenter", type=Path, default=None, help="segmentation checkpoint (default: the shipped one)")
    args = ap.parse_args()
    scans = [read_raster(p) for p in sample_scans().values()]
    clf = Classifier.load(None, device="cpu")
    result: dict[str, object] = {
        "command": shlex.join(["python", *sys.argv]),
        "segmenter": Segmenter.load(args.segmenter, device="cpu").info(),
        "images": [p.name for p in sample_scans().values()],
    }
    runs = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        figures = [Figure("classify", _each(scans, lambda s: clf.predict_proba_prepared(clf.prepare(s)[None])))]
        figures += _segment_figure("cpu", scans, None, args.segmenter)
        timed = time_interleaved(figures, args.repeats)
        runs[str(threads)] = timed | {"hardware": hardware_summary()}
        print(threads, "threads:", {k: round(v["median"], 1) for k, v in timed.items()}, flush=True)
    result["by_threads"] = runs
    result["segment_ms"] = {t: r["segment"]["median"] for t, r in runs.items()}
    result["classify_ms"] = {t: r["classify"]["median"] for t, r in runs.items()}
    result["note"] = "medians (ms) over interleaved rounds; segment = crop, resize, network, map back, one slice"
    atomic_write_text(args.out, json.dumps(result, indent=2, default=lambda o: float(np.asarray(o))))


if __name__ == "__main__":
    main()
