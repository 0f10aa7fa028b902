"""Web batch jobs against the same uploads sent one at a time, in one process, with the real model.

A batch job (``POST /api/batch``) analyses its files a few at a time in one batched pass
(``AnalysisService.analyze_many``); the baseline sends the same files one by one to ``POST /api/analyze``
and waits for each. Both write everything a study keeps (PNGs, PDF, JSON, what its DICOM results are built
from on download) and commit one study per file. The two alternate for ``--rounds`` rounds after one warm-up
of each; the report gives the median wall time per file and the ratio, then the time of a ``dicom.zip``
download (the study's DICOM results are built then). The app runs in-process (FastAPI's TestClient), so no
network and no server start-up is measured.

    python benchmarks/web_batch.py --out benchmarks/web_batch [--files 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "brainxai" / "samples"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
PASSWORD = "bench-password-1"


def _uploads(n: int) -> list[tuple[str, bytes]]:
    return [(f"{i}-{c}.jpg", (SAMPLES / f"{c}.jpg").read_bytes()) for i, c in zip(range(n), CLASSES * n)]


def _batch(client: Any, headers: dict[str, str], uploads: list[tuple[str, bytes]], method: str) -> float:
    t0 = time.perf_counter()
    files = [("files", (name, data)) for name, data in uploads]
    job = client.post("/api/batch", headers=headers, files=files, data={"method": method}).json()
    while (state := client.get(f"/api/batch/{job['id']}", headers=headers).json())["status"] != "done":
        time.sleep(0.01)
    if state["done"] != len(uploads):
        raise RuntimeError(f"batch job failed items: {state['items']}")
    return time.perf_counter() - t0


def _one_by_one(client: Any, headers: dict[str, str], uploads: list[tuple[str, bytes]], method: str) -> float:
    t0 = time.perf_counter()
    for name, data in uploads:
        r = client.post("/api/analyze", headers=headers, files={"file": (name, data)}, data={"method": method})
        if r.status_code != 201:
            raise RuntimeError(f"{name}: {r.status_code} {r.text}")
    return time.perf_counter() - t0


def _dicom_downloads(client: Any, headers: dict[str, str]) -> list[float]:
    """Seconds per ``dicom.zip`` download (the DICOM results are built then) of the newest studies, once each."""
    studies = client.get("/api/studies", headers=headers, params={"limit": 8}).json()
    times = []
    for study in studies:
        t0 = time.perf_counter()
        r = client.get(f"/api/studies/{study['id']}/dicom.zip", headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"dicom.zip of {study['id']}: {r.status_code} {r.text}")
        times.append(time.perf_counter() - t0)
    return times


def run(n_files: int, rounds: int, method: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from brainxai.pipeline.service import AnalysisService
    from brainxai.pipeline.steps import EXPLAIN_BATCH
    from brainxai.web.app import create_app
    from brainxai.web.crud import create_user
    from brainxai.web.db import session_scope
    from brainxai.web.settings import Settings

    uploads = _uploads(n_files)
    service = AnalysisService(None, device="cpu")
    times: dict[str, list[float]] = {"batch job": [], "one at a time": []}
    with tempfile.TemporaryDirectory(prefix="brainxai-webbatch-") as tmp:
        settings = Settings(data_dir=Path(tmp), max_batch_files=max(10, n_files), max_batch_mb=100.0)
        app = create_app(settings, service_factory=lambda _s: service)
        with TestClient(app) as client:
            with session_scope(app.state.brainxai.session_factory) as db:
                create_user(db, "bench", PASSWORD, is_admin=False)
            token = client.post("/api/auth/token", json={"username": "bench", "password": PASSWORD}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            _batch(client, headers, uploads, method)  # warm-up of both paths
            _one_by_one(client, headers, uploads, method)
            for _ in range(rounds):
                times["batch job"].append(_batch(client, headers, uploads, method))
                times["one at a time"].append(_one_by_one(client, headers, uploads, method))
            _dicom_downloads(client, headers)  # warm-up (imports)
            downloads = _dicom_downloads(client, headers)
    per_file = {k: statistics.median(v) / n_files * 1e3 for k, v in times.items()}
    return {
        "command": "python benchmarks/web_batch.py " + " ".join(sys.argv[1:]),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_end": os.getloadavg()},
        "files": n_files,
        "rounds": rounds,
        "method": method,
        "explain_batch": EXPLAIN_BATCH,
        "wall_s": times,
        "median_ms_per_file": per_file,
        "speedup": per_file["one at a time"] / per_file["batch job"],
        "dicom_zip_ms": [t * 1e3 for t in downloads],
        "dicom_zip_median_ms": statistics.median(downloads) * 1e3,
    }


def _markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# Web batch jobs: batched analysis against one upload at a time",
        "",
        "Research use only, not a diagnostic device.",
        "",
        f"Command: `{rep['command']}`. Host: {rep['host']['cpus']} CPU cores, no GPU; the app in-process "
        f"(TestClient), the shipped model, method {rep['method']}, {rep['files']} sample uploads (the four demo "
        f"scans in turn) per round, {rep['rounds']} rounds alternating after a warm-up of each. Every study's "
        "files are written (PNGs, PDF, JSON, the inputs its DICOM results are built from on download) and committed.",
        "",
        "| path | wall s per round | median ms per file |",
        "|---|---|---|",
    ]
    for name, walls in rep["wall_s"].items():
        lines.append(f"| {name} | {', '.join(f'{w:.2f}' for w in walls)} | {rep['median_ms_per_file'][name]:.0f} |")
    lines += [
        "",
        f"The batch job analyses {rep['explain_batch']} files per batched pass: "
        f"{rep['speedup']:.2f}x faster per file than sending them one at a time.",
        "",
        "A study's DICOM results are built when its `dicom.zip` is downloaded: median "
        f"{rep['dicom_zip_median_ms']:.0f} ms per download ({len(rep['dicom_zip_ms'])} studies, after a warm-up).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/web_batch"))
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", default="lrp")
    args = parser.parse_args()
    rep = run(args.files, args.rounds, args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rep, indent=2))
    args.out.with_suffix(".md").write_text(_markdown(rep))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
