"""What segmenting the tumour adds to ``AnalysisService.analyze`` (LRP + agreement + PDF report).

Analyses figshare development slices (one per class in turn, after one warm-up pass) alternately with
``segment=False`` and ``segment=True`` and prints the mean wall time and process CPU time per analysis
of each, their ratio (target: at most 1.3), and the time of the segment step alone (the model's call and
the lesion measures; out-of-domain slices are not segmented, ``calls`` says how many were). The
segmenter is the shipped one when installed, else ``--checkpoint``; with ``--stub`` a stand-in that
returns the slice's expert mask (so only the pipeline's own additions are timed: the measures, the
outline image, the extra PNG, the PDF lines).

    python benchmarks/segmentation_overhead.py --rounds 3 --out benchmarks/segmentation_overhead
    python benchmarks/segmentation_overhead.py --stub --rounds 3 --out /tmp/segmentation_overhead_stub
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "figshare-masks-dev"


class ExpertMask:
    """Returns the expert mask of the slice it is given (looked up by its pixels' checksum)."""

    name, sha256, threshold = "expert-mask-stub", "0" * 64, 0.5

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self.masks = {}
        for image, mask in pairs:
            pixels = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
            self.masks[pixels.tobytes()[:4096] + bytes(str(pixels.shape), "ascii")] = (
                cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0
            )

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "threshold": self.threshold}

    def probability(self, images: Any, batch_size: int = 16) -> list[np.ndarray]:
        return [self.segment(i).astype(np.float32) for i in images]

    def segment(self, image: np.ndarray) -> np.ndarray:
        key = image.tobytes()[:4096] + bytes(str(image.shape), "ascii")
        return self.masks.get(key, np.zeros(image.shape[:2], bool)).copy()


def _slices(n_per_class: int) -> list[tuple[Path, Path]]:
    rows = list(csv.DictReader((DATA / "slices.csv").open()))
    out: list[tuple[Path, Path]] = []
    for label in ("glioma", "meningioma", "pituitary"):
        picked = [r for r in rows if r["label"] == label][:: max(1, len(rows) // 50)][:n_per_class]
        out += [(DATA / r["file"], DATA / r["mask"]) for r in picked]
    return out


def _timed(acc: list[float], fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc.append((time.perf_counter() - t) * 1000)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--stub", action="store_true", help="a stand-in segmenter returning the expert mask")
    parser.add_argument("--checkpoint", type=Path, default=None, help="segmentation checkpoint (default: shipped)")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args()

    from brainxai.pipeline import AnalysisOptions, AnalysisService
    from brainxai.pipeline import segment as segment_step

    pairs = _slices(args.per_class)
    segmenter: Any = ExpertMask(pairs) if args.stub else args.checkpoint
    service = AnalysisService(None, device="cpu", segmenter=segmenter)
    # The first calls of a torch model are slow (oneDNN set-up: seconds on a 2-core CPU); time the steady state.
    warm = service._segmenter.get(True)
    for _ in range(3):
        warm.segment(cv2.imread(str(pairs[0][0]), cv2.IMREAD_GRAYSCALE))
    step_ms: list[float] = []
    segment_step.segment = _timed(step_ms, segment_step.segment)  # type: ignore[assignment]
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds + 1):
            for i, (image, _) in enumerate(pairs):
                for seg in (False, True) if (round_ + i) % 2 == 0 else (True, False):
                    t, c = time.perf_counter(), time.process_time()
                    service.analyze(image, AnalysisOptions(segment=seg), out_dir=Path(tmp) / f"{round_}-{i}-{seg}")
                    if round_:  # round 0 warms up
                        times[seg].append(((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000))
    step = step_ms
    summary = {
        "command": "python " + " ".join(sys.argv),
        "segmenter": service._segmenter.get(True).info(),
        "analyses_per_setting": len(times[True]),
        "without_ms": {
            "wall": float(np.mean([w for w, _ in times[False]])),
            "cpu": float(np.mean([c for _, c in times[False]])),
        },
        "with_ms": {
            "wall": float(np.mean([w for w, _ in times[True]])),
            "cpu": float(np.mean([c for _, c in times[True]])),
        },
        "segment_step_ms": {
            "mean": float(np.mean(step)),
            "median": float(np.median(step)),
            "calls": len(step),
            "each": [round(v, 1) for v in step],
        },
    }
    summary["ratio_wall"] = summary["with_ms"]["wall"] / summary["without_ms"]["wall"]
    summary["ratio_cpu"] = summary["with_ms"]["cpu"] / summary["without_ms"]["cpu"]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(text + "\n")
        args.out.with_suffix(".md").write_text(
            f"# Segmentation overhead of analyze\n\nCommand: `{summary['command']}`\n\n"
            f"| | wall ms | CPU ms |\n|---|---|---|\n"
            f"| segment=False | {summary['without_ms']['wall']:.0f} | {summary['without_ms']['cpu']:.0f} |\n"
            f"| segment=True | {summary['with_ms']['wall']:.0f} | {summary['with_ms']['cpu']:.0f} |\n"
            f"| ratio | {summary['ratio_wall']:.2f} | {summary['ratio_cpu']:.2f} |\n\n"
            f"Segment step alone (model call + lesion measures): median {summary['segment_step_ms']['median']:.1f} ms. "
            f"Segmenter: {summary['segmenter'].get('name')}.\n"
        )


if __name__ == "__main__":
    main()
