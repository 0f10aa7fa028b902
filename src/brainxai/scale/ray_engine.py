"""Archive-scale analysis on Ray Data: ``brainxai analyze --engine ray``.

The run is one Ray Data pipeline, each stage an operator with Ray's own progress bar::

    the scans still to do (sources minus the rows already written)     from_items
    -> read bytes + decode (CPU tasks)                                  pipeline.steps.read
    -> analyse (an actor pool; each actor loads one AnalysisService)    pipeline.batch.analyze_batch
    -> one row per scan                                                 scale.rows
    -> Parquet files in OUT/results/                                    write_parquet

The actors run the library's own analysis (:meth:`AnalysisService.analyze` through
:func:`~brainxai.pipeline.batch.analyze_batch`, the code behind ``brainxai analyze`` and the web app):
prepare -> classify -> explain -> map back -> spatial analysis -> outputs, with the same error policy
(a bad file is a row with its error, the run goes on). The only difference is where decoding runs:
2-D scans are decoded by CPU tasks and handed to the actor decoded; volumes whose slice is chosen by
the model, and files that fail to decode, go to the actor as bytes and are decoded (or rejected) there
exactly as in one process. Actors use a GPU each when the cluster has GPUs.

Resumable: scans whose ``path`` is already in ``OUT/results/`` are skipped, so re-running the same
command after an interruption analyses only the rest. With ``retry_failed`` the rows of scans that failed
are removed first and those scans analysed again (e.g. after a storage outage or a repaired file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import pickle
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from brainxai.io import ScanImage
from brainxai.pipeline import steps
from brainxai.pipeline.batch import analyze_batch
from brainxai.pipeline.options import AnalysisOptions
from brainxai.pipeline.service import AnalysisService
from brainxai.scale.inputs import done_paths, drop_failed_rows, is_url, resolve_sources
from brainxai.scale.rows import error_row, result_row, to_table
from brainxai.util.names import safe_stem

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

logger = logging.getLogger(__name__)

#: CPUs (Ray's logical units) of one decode or write task: small, so actors and I/O share a small node.
TASK_CPUS = 0.25


@dataclass(frozen=True)
class RayRunConfig:
    """How to run an analysis on Ray.

    Attributes:
        out: Output folder: ``results/`` (the Parquet table) and, with ``per_scan_outputs``, ``scans/``.
        options: How to analyse each scan (as for ``brainxai analyze``).
        checkpoint: Model checkpoint (None: the shipped model); every worker must be able to read it.
        device: ``auto`` (a GPU per actor when the cluster has GPUs), ``cpu`` or ``cuda``.
        address: Ray cluster address (``auto``, ``ray://host:10001``...); None starts a local one.
        workers: Analysis actors (default: one per GPU, else one per CPU).
        batch_size: Scans per batch handed to a decode task or an actor.
        per_scan_outputs: Keep each scan's JSON, PNGs and (with ``options.report``) PDF in ``out/scans/``.
        retry_failed: Analyse again the scans whose earlier rows are errors (their rows are replaced).
    """

    out: Path
    options: AnalysisOptions
    checkpoint: str | None = None
    device: str = "auto"
    address: str | None = None
    workers: int | None = None
    batch_size: int = 16
    per_scan_outputs: bool = False
    retry_failed: bool = False

    @property
    def results_dir(self) -> Path:
        """Where the Parquet files go."""
        return self.out / "results"

    @property
    def scans_dir(self) -> Path:
        """Where the per-scan outputs go."""
        return self.out / "scans"


@dataclass(frozen=True)
class RayRunSummary:
    """What a run did.

    Attributes:
        results_dir: The Parquet table's folder.
        total: Scans named by the sources.
        skipped: Of those, already in the table (from an earlier run).
        written: Rows written by this run.
        failed: Of those, rows with an error.
        seconds: Wall time of the pipeline (from building it to the last file written).
        workers: Analysis actors used.
        stats: Ray Data's execution statistics (time per operator).
    """

    results_dir: Path
    total: int
    skipped: int
    written: int
    failed: int
    seconds: float
    workers: int
    stats: str


def run_ray_analysis(sources: Sequence[str | Path], config: RayRunConfig) -> RayRunSummary:
    """Analyses every scan named by ``sources`` on a Ray cluster; see the module docstring.

    Args:
        sources: Folders, globs, files, URLs or CSV/Parquet manifests with a ``path`` column.
        config: How to run.

    Returns:
        A :class:`RayRunSummary`; the rows are in ``config.results_dir``.
    """
    import ray

    if not config.per_scan_outputs:
        # Nothing of a scan's files is kept without per-scan outputs: its PDF, PNGs and JSON would be wasted
        # work (the files the DICOM results are made from excepted).
        keep_for_dicom = config.options.dicom_out is not None
        options = dataclasses.replace(config.options, report=False, write_files=keep_for_dicom)
        config = dataclasses.replace(config, options=options)
    paths = resolve_sources(sources)
    if config.retry_failed:
        drop_failed_rows(config.results_dir)
    done = done_paths(config.results_dir)
    todo = [p for p in paths if p not in done]
    if not todo:
        return RayRunSummary(config.results_dir, len(paths), len(paths), 0, 0, 0.0, 0, "")
    if not ray.is_initialized():
        ray.init(address=config.address, include_dashboard=False, log_to_driver=True)
    plan = _plan_resources(config, ray.cluster_resources())
    t0 = time.perf_counter()
    ds: Dataset = ray.data.from_items(
        [{"path": p} for p in todo], override_num_blocks=math.ceil(len(todo) / config.batch_size)
    )
    ds = ds.map_batches(
        _read_and_decode,
        batch_size=config.batch_size,
        batch_format="numpy",
        fn_kwargs={"slice_index": config.options.slice_index},
        num_cpus=TASK_CPUS,
    )
    ds = ds.map_batches(
        _Analyzer,
        batch_size=config.batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={"config": config, "device": plan.device, "threads": plan.threads},
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.actor_cpus,
        num_gpus=plan.actor_gpus,
    )
    config.results_dir.mkdir(parents=True, exist_ok=True)
    ds.write_parquet(str(config.results_dir), ray_remote_args={"num_cpus": TASK_CPUS})
    seconds = time.perf_counter() - t0
    written, failed = _count_rows(config.results_dir, set(todo))
    return RayRunSummary(
        config.results_dir, len(paths), len(paths) - len(todo), written, failed, seconds, plan.workers, ds.stats()
    )


@dataclass(frozen=True)
class _Plan:
    workers: int
    actor_cpus: float
    actor_gpus: float
    device: str
    threads: int


def _plan_resources(config: RayRunConfig, cluster: dict[str, float]) -> _Plan:
    """Actors and their resources: a GPU each when there are GPUs, else CPUs left after the I/O tasks."""
    cpus, gpus = float(cluster.get("CPU", 1.0)), float(cluster.get("GPU", 0.0))
    use_gpu = config.device.startswith("cuda") or (config.device == "auto" and gpus >= 1)
    if use_gpu:
        if gpus < 1:
            raise ValueError(f"--device {config.device} asks for GPUs, but the Ray cluster has none")
        workers = config.workers or int(gpus)
        return _Plan(workers, 1.0, 1.0, "cuda", 1)
    workers = config.workers or max(1, int(cpus - 2 * TASK_CPUS))
    # The decode and write tasks need a share too, or a small node would wait forever for a free CPU.
    # At most one CPU (one torch thread) per actor: a lone actor with both threads of a 2-CPU node ran
    # slower than with one (5.92 against 7.20 images/s, benchmarks/scale.py on all 1,311 Testing images):
    # its two threads wait on each other while Ray's processes and the decode tasks take turns on the cores.
    # More throughput comes from more actors (--workers), not threads.
    actor_cpus = min(1.0, (cpus - 2 * TASK_CPUS) / workers)
    if actor_cpus < TASK_CPUS:
        raise ValueError(f"{workers} workers do not fit on a Ray cluster with {cpus:g} CPUs")
    return _Plan(workers, actor_cpus, 0.0, "cpu", max(1, round(actor_cpus)))


def _count_rows(results_dir: Path, paths: set[str]) -> tuple[int, int]:
    """Rows of ``paths`` in the table, and how many of them have an error."""
    import pyarrow.parquet as pq

    written = failed = 0
    for f in results_dir.glob("*.parquet"):
        table = pq.read_table(f, columns=["path", "error"]).to_pylist()
        mine = [r for r in table if r["path"] in paths]
        written += len(mine)
        failed += sum(1 for r in mine if r["error"])
    return written, failed


# -- stage 1: read bytes and decode (CPU tasks) -----------------------------------------------------


class _ModelNeeded(Exception):
    """A volume whose slice the model chooses: decoded in the actor, which has the model."""


def _refuse_scoring(slices: Sequence[np.ndarray]) -> list[float]:
    raise _ModelNeeded


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else Path(path).name


def _read_bytes(path: str) -> bytes:
    """The file's bytes, from the local disk or any file system ``pyarrow.fs`` knows (s3://, gs://, hdfs://)."""
    if not is_url(path) or path.startswith("file://"):
        return Path(path.removeprefix("file://")).read_bytes()
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    with fs.open_input_file(inner) as fh:
        return bytes(fh.read())


def _read_and_decode(batch: dict[str, np.ndarray], slice_index: int | None = None) -> dict[str, Any]:
    """Reads and decodes a batch; payload is the pickled :class:`ScanImage`, or the bytes for the actor."""
    cols: dict[str, list[Any]] = {k: [] for k in ("path", "kind", "payload", "error", "read_ms", "decode_ms")}
    for raw in batch["path"]:
        path = str(raw)
        t0 = time.perf_counter()
        kind, payload, error = "bytes", b"", ""
        try:
            payload = _read_bytes(path)
        except Exception as exc:  # any I/O failure of one file is that file's row, never the run's
            kind, error = "error", f"{_name(path)}: cannot read ({type(exc).__name__}: {exc})"
        t1 = time.perf_counter()
        if kind == "bytes":
            try:
                scan = steps.read(payload, filename=_name(path), slice_index=slice_index, scorer=_refuse_scoring)
                kind, payload = "scan", pickle.dumps(scan, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # the actor decodes it again and reports its error as one process would
                pass
        for key, value in zip(cols, (path, kind, payload, error, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)):
            cols[key].append(value)
    return {k: np.array(v, dtype=object) for k, v in cols.items()}


# -- stage 2: analyse (actor pool) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    """File bytes with the name to report (for the actor to decode)."""

    data: bytes
    name: str


class _ScanService(AnalysisService):
    """The analysis service, also taking a scan decoded elsewhere (by a decode task) or named bytes."""

    def read(self, source: Any, *, filename: str | None = None, slice_index: int | None = None) -> ScanImage:
        if isinstance(source, ScanImage):
            return source
        if isinstance(source, _Encoded):
            return super().read(source.data, filename=source.name, slice_index=slice_index)
        return super().read(source, filename=filename, slice_index=slice_index)


def output_name(path: str) -> str:
    """Base name of a scan's per-scan outputs: its stem plus a hash of its full path (unique across a run)."""
    return f"{safe_stem(_name(path))}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


class _Analyzer:
    """One analysis actor: loads the model once, then analyses batch after batch."""

    def __init__(self, config: RayRunConfig, device: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.config = config
        self.service = _ScanService(config.checkpoint, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows: list[dict[str, Any]] = []
        todo: list[tuple[int, str, Any]] = []  # (row index, path, source)
        for path, kind, payload, error, read_ms, decode_ms in zip(
            *(batch[k] for k in ("path", "kind", "payload", "error", "read_ms", "decode_ms"))
        ):
            timings = {"read_ms": float(read_ms), "decode_ms": float(decode_ms)}
            if kind == "error":
                rows.append(error_row(str(path), str(error), timings=timings))
                continue
            source = pickle.loads(payload) if kind == "scan" else _Encoded(bytes(payload), _name(str(path)))
            rows.append({"path": str(path), **timings})
            todo.append((len(rows) - 1, str(path), source))
        if todo:
            self._analyze(rows, todo)
        return to_table(rows)

    def _analyze(self, rows: list[dict[str, Any]], todo: list[tuple[int, str, Any]]) -> None:
        """Runs ``analyze_batch`` on the decoded scans and fills their rows (in place)."""
        keep = self.config.per_scan_outputs
        with tempfile.TemporaryDirectory(prefix="brainxai-ray-") as tmp:
            out_dir = self.config.scans_dir if keep else Path(tmp)
            items = analyze_batch(
                self.service,
                cast(list[Path], [source for _, _, source in todo]),  # decoded scans: see _ScanService.read
                self.config.options,
                out_dir=out_dir,
                names=[output_name(path) for _, path, _ in todo],
            )
        for (index, path, _), item in zip(todo, items, strict=True):
            timings = {k: rows[index][k] for k in ("read_ms", "decode_ms")} | {"analyze_ms": item.seconds * 1e3}
            if item.ok and item.result is not None:
                rows[index] = result_row(path, item.result, keep_files=keep, timings=timings)
            else:
                rows[index] = error_row(path, item.error or "", timings=timings)
