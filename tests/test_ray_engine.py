"""``brainxai analyze --engine ray``: a local Ray cluster gives the same rows as one process, resumes, keeps errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from brainxai.scale.inputs import done_paths, drop_failed_rows, resolve_sources

TESTING_FILES = ("glioma/Te-glTr_0000.jpg", "notumor/Te-noTr_0000.jpg", "pituitary/Te-piTr_0000.jpg")


def test_sources_folder_glob_and_manifest(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.dcm").write_bytes(b"x")
    folder = resolve_sources([tmp_path])
    assert folder == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), str(tmp_path / "sub" / "c.dcm")]
    assert resolve_sources([str(tmp_path / "*.jpg")]) == [str(tmp_path / "a.jpg")]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nb.png,x\nsub/c.dcm,y\ns3://bucket/d.jpg,z\n")
    assert resolve_sources([manifest, tmp_path / "b.png"]) == [
        str(tmp_path / "b.png"),
        str(tmp_path / "sub" / "c.dcm"),
        "s3://bucket/d.jpg",
    ]
    assert resolve_sources([Path("s3://bucket/e.jpg")]) == ["s3://bucket/e.jpg"]  # pathlib's s3:/ repaired
    bad = tmp_path / "bad.csv"
    bad.write_text("file\na.jpg\n")
    with pytest.raises(ValueError, match="'path' column"):
        resolve_sources([bad])


def test_drop_failed_rows_keeps_analysed_rows_and_removes_only_failures(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from brainxai.scale.rows import to_table

    def row(path: str, error: str = "") -> dict:
        return {"path": path, "prediction": None if error else "glioma", "error": error}

    results = tmp_path / "results"
    results.mkdir()
    pq.write_table(to_table([row("a"), row("b", "b: cannot read"), row("c", "c: bad")]), results / "one.parquet")
    pq.write_table(to_table([row("c"), row("d", "d: bad")]), results / "two.parquet")  # c analysed later
    pq.write_table(to_table([row("e", "e: bad")]), results / "three.parquet")
    (results / "torn.parquet").write_bytes(b"PAR1 torn")
    assert drop_failed_rows(results) == {"b", "d", "e"}
    assert sorted(f.name for f in results.iterdir()) == ["one.parquet", "torn.parquet", "two.parquet"]
    tables = [pq.read_table(results / f"{n}.parquet").to_pylist() for n in ("one", "two")]
    rows = [(r["path"], r["error"]) for table in tables for r in table]
    assert rows == [("a", ""), ("c", "c: bad"), ("c", "")]  # c has an analysed row: its old error stays
    assert done_paths(results) == {"a", "c"}
    assert drop_failed_rows(results) == set() and drop_failed_rows(tmp_path / "missing") == set()


def test_actors_get_at_most_one_cpu_each_after_the_io_tasks(tmp_path: Path) -> None:
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.scale.ray_engine import TASK_CPUS, RayRunConfig, _plan_resources

    def plan(workers: int | None, cpus: float, gpus: float = 0.0) -> tuple:
        config = RayRunConfig(out=tmp_path, options=AnalysisOptions(), workers=workers)
        p = _plan_resources(config, {"CPU": cpus, "GPU": gpus})
        return p.workers, p.actor_cpus, p.threads, p.device

    io = 2 * TASK_CPUS
    assert plan(None, 2) == (1, 1.0, 1, "cpu")  # one thread even alone: two ran slower (benchmarks/scale.py)
    assert plan(2, 2) == (2, (2 - io) / 2, 1, "cpu")
    assert plan(None, 16) == (15, 1.0, 1, "cpu")
    assert plan(4, 16) == (4, 1.0, 1, "cpu")
    assert plan(None, 8, gpus=2) == (2, 1.0, 1, "cuda")
    with pytest.raises(ValueError, match="do not fit"):
        plan(8, 2)


def test_default_engine_never_imports_ray() -> None:
    code = "import sys, brainxai.cli; print('ray' in sys.modules, 'brainxai.scale' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]


# -- on a local Ray cluster -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster (2 CPUs, real worker processes) for every Ray test of the session."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def scans(mri_root: Path, tmp_path: Path) -> Path:
    """Three real Testing images and one truncated JPEG."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for rel in TESTING_FILES:
        shutil.copy(mri_root / "Testing" / rel, folder / Path(rel).name)
    (folder / "broken.jpg").write_bytes((mri_root / "Testing" / TESTING_FILES[0]).read_bytes()[:300])
    return folder


def _rows(results: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(results).to_pylist()


def test_engine_ray_option_dispatches_to_the_ray_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from brainxai.cli import analyze_ray, app

    calls: list[tuple[list[Path], dict]] = []
    monkeypatch.setattr(analyze_ray, "run_on_ray", lambda paths, options, **kw: calls.append((paths, kw)))
    source = tmp_path / "scans"
    source.mkdir()
    (source / "a.jpg").write_bytes(b"x")
    args = ["analyze", "--engine", "ray", str(source), "--out", str(tmp_path / "o"), "--workers", "3"]
    args += ["--batch-size", "4", "--address", "auto", "--per-scan-outputs", "--retry-failed"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ((paths, kw),) = calls
    assert paths == [source] and kw["out"] == tmp_path / "o" and kw["address"] == "auto"
    assert (kw["workers"], kw["batch_size"], kw["per_scan_outputs"], kw["retry_failed"]) == (3, 4, True, True)


# About 75 s on a loaded 2-core host (13 s to start Ray, then actors that each load the model).
def test_ray_rows_equal_single_process_and_resume(ray_cluster: None, scans: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from brainxai.pipeline.batch import analyze_batch
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService
    from brainxai.scale.ray_engine import RayRunConfig, run_ray_analysis
    from brainxai.scale.rows import to_table

    out = tmp_path / "out"
    first = scans / Path(TESTING_FILES[0]).name
    # One scan done by an earlier run (a row it wrote); this run must skip it, not analyse it again.
    (out / "results").mkdir(parents=True)
    earlier = {"path": str(first), "prediction": "glioma", "analysis_id": "earlier-run", "error": ""}
    pq.write_table(to_table([earlier]), out / "results" / "earlier.parquet")

    config = RayRunConfig(out=out, options=AnalysisOptions(report=False), workers=2, batch_size=2)
    summary = run_ray_analysis([scans], config)
    assert (summary.total, summary.skipped, summary.written, summary.failed) == (4, 1, 3, 1)
    rows = {r["path"]: r for r in _rows(out / "results")}
    assert sorted(rows) == sorted(str(p) for p in scans.iterdir())  # one row per scan, none twice
    assert rows[str(first)]["analysis_id"] == "earlier-run"
    assert done_paths(out / "results") == set(rows)

    service = AnalysisService(None, device="cpu")
    files = sorted(p for p in scans.iterdir() if p != first)
    items = analyze_batch(service, files, AnalysisOptions(report=False), out_dir=tmp_path / "single")
    for f, item in zip(files, items, strict=True):
        row = rows[str(f)]
        if not item.ok:
            assert f.name == "broken.jpg"
            assert row["error"] == item.error and row["prediction"] is None
            continue
        r = item.result
        assert r is not None and row["error"] == ""
        assert row["prediction"] == r.prediction
        probs = json.loads(row["probabilities"])
        assert list(probs) == sorted(r.probabilities)
        np.testing.assert_allclose([probs[c] for c in r.probabilities], list(r.probabilities.values()), atol=1e-5)
        assert row["model_sha256"] == service.model_info["sha256"]
        params = json.loads(row["spatial_parameters"])
        assert [p["name"] for p in params] == [p["name"] for p in r.spatial_parameters]
        assert [p["status"] for p in params] == [p["status"] for p in r.spatial_parameters]
        assert json.loads(row["warnings"]) == r.warnings
        assert row["analyze_ms"] > 0 and row["report_json"] is None  # no per-scan outputs asked for

    again = run_ray_analysis([scans], config)
    assert (again.skipped, again.written) == (4, 0)  # the failed scan's row counts as done...

    shutil.copy(scans / "Te-noTr_0000.jpg", scans / "broken.jpg")  # ...until it is repaired and retried
    retried = run_ray_analysis([scans], dataclasses.replace(config, retry_failed=True, workers=1))
    assert (retried.skipped, retried.written, retried.failed) == (3, 1, 0)
    after = _rows(out / "results")
    assert sorted(r["path"] for r in after) == sorted(rows)  # still one row per scan
    fixed = next(r for r in after if r["path"] == str(scans / "broken.jpg"))
    assert fixed["error"] == "" and fixed["prediction"] == rows[str(scans / "Te-noTr_0000.jpg")]["prediction"]
