"""Crash test of ``brainxai serve``: kill -9 during a stream of writes, restart, check nothing was lost.

Each round starts the real server on 127.0.0.1 over the same data dir, runs --writers threads
that upload scans back to back (``POST /api/analyze``, each acknowledged study id recorded) plus
one batch job of three files, and sends SIGKILL to the server after a random delay while writes
are in flight. After the last round the server is started once more and the script checks that:

  * every acknowledged study is present, with its images and PDF report downloadable;
  * every study row in the database has its folder on disk, and no orphan or staging folders
    remain (start-up recovery removed what the kills left half-written);
  * every acknowledged batch job finishes after the restart (interrupted items are resumed);
  * SQLite's ``PRAGMA integrity_check`` says ``ok`` and foreign keys hold.

Bounded: --rounds rounds, each killed at most --kill-max seconds after its writes start; loopback only.

Usage: python benchmarks/crash.py [--rounds 3] [--writers 3] [--checkpoint CKPT | --random-checkpoint] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from _server import prepare, token

from brainxai.web.process import ServerProcess

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "brainxai" / "samples"


def writer(
    url: str, headers: dict[str, str], seed: int, stop: threading.Event, acked: list[str], errors: list[str]
) -> None:
    rng = random.Random(seed)
    scans = sorted(SAMPLES.glob("*.jpg"))
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        while not stop.is_set():
            scan = rng.choice(scans)
            try:
                r = http.post(
                    "/api/analyze",
                    files={"file": (scan.name, scan.read_bytes())},
                    data={"method": "gradcam", "patient_code": f"CRASH-{seed % 3}"},
                )
            except httpx.HTTPError:
                return  # the server is gone: expected once it is killed
            if r.status_code == 201:
                acked.append(r.json()["id"])
            else:
                errors.append(f"HTTP {r.status_code}: {r.text[:200]}")


def submit_batch(url: str, headers: dict[str, str]) -> str | None:
    files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLES.glob("*.jpg"))[:3]]
    try:
        r = httpx.post(f"{url}/api/batch", headers=headers, files=files, data={"method": "gradcam"}, timeout=120)
    except httpx.HTTPError:
        return None
    return r.json()["id"] if r.status_code == 202 else None


def verify(server: ServerProcess, headers: dict[str, str], acked: list[str], jobs: list[str], timeout_s: float) -> dict:
    problems: list[str] = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        for study_id in acked:
            r = http.get(f"/api/studies/{study_id}")
            if r.status_code != 200:
                problems.append(f"acknowledged study {study_id} missing: HTTP {r.status_code}")
                continue
            links = r.json()["links"]
            for url in [*links["images"].values(), links["report_pdf"]]:
                f = http.get(url)
                if f.status_code != 200 or len(f.content) == 0:
                    problems.append(f"study {study_id}: {url} -> HTTP {f.status_code}")
        deadline = time.monotonic() + timeout_s
        finished = 0
        for job_id in jobs:
            while True:
                job = http.get(f"/api/batch/{job_id}").json()
                if job.get("status") == "done" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if job.get("status") == "done":
                finished += 1
                problems += [
                    f"batch {job_id} item {i['position']}: {i['error']}" for i in job["items"] if i["status"] == "error"
                ]
            else:
                problems.append(f"batch {job_id} not finished after restart: {job.get('status')}")
    return {"problems": problems, "batches_finished": finished}


def check_disk_and_db(data_dir: Path) -> dict:
    db_path = data_dir / "brainxai.db"
    con = sqlite3.connect(db_path)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        fk_violations = con.execute("PRAGMA foreign_key_check").fetchall()
        rows = {r[0]: r[1] for r in con.execute("SELECT id, storage_dir FROM studies")}
    finally:
        con.close()
    folders = {p.name for p in (data_dir / "studies").iterdir()}
    return {
        "integrity_check": integrity,
        "foreign_key_violations": len(fk_violations),
        "studies_in_db": len(rows),
        "rows_without_folder": sorted(set(rows) - folders),
        "folders_without_row": sorted(folders - set(rows)),
        "staging_leftovers": len(list((data_dir / "tmp").iterdir())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--kill-min", type=float, default=6.0, help="earliest kill, seconds after writes start")
    ap.add_argument("--kill-max", type=float, default=15.0, help="latest kill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model to serve (default: the shipped model)")
    ap.add_argument("--random-checkpoint", action="store_true", help="serve an untrained efficientnet-lite0")
    ap.add_argument("--data-dir", type=Path, default=None, help="server data dir (default: a fresh temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    data_dir, checkpoint, work = prepare(args.data_dir, args.checkpoint, args.random_checkpoint)
    acked: list[str] = []
    jobs: list[str] = []
    write_errors: list[str] = []
    rounds = []
    for round_no in range(args.rounds):
        server = ServerProcess(data_dir, checkpoint, log_path=work / "server.log").start()
        headers = {"Authorization": f"Bearer {token(server)}"}
        stop = threading.Event()
        before = len(acked)
        threads = [
            threading.Thread(target=writer, args=(server.url, headers, round_no * 100 + i, stop, acked, write_errors))
            for i in range(args.writers)
        ]
        for t in threads:
            t.start()
        job = submit_batch(server.url, headers)
        if job:
            jobs.append(job)
        delay = rng.uniform(args.kill_min, args.kill_max)
        time.sleep(delay)
        server.kill()  # SIGKILL while uploads and the batch are in flight
        stop.set()
        for t in threads:
            t.join(timeout=60)
        rounds.append({"round": round_no + 1, "killed_after_s": round(delay, 1), "acknowledged": len(acked) - before})

    with ServerProcess(data_dir, checkpoint, log_path=work / "server.log") as server:
        headers = {"Authorization": f"Bearer {token(server)}"}
        result = verify(server, headers, acked, jobs, timeout_s=600)
        state = check_disk_and_db(data_dir)

    ok = (
        not result["problems"]
        and not write_errors
        and state["integrity_check"] == "ok"
        and state["foreign_key_violations"] == 0
        and not state["rows_without_folder"]
        and not state["folders_without_row"]
        and state["staging_leftovers"] == 0
    )
    log = (work / "server.log").read_text(errors="replace")
    summary = {
        "benchmark": "web crash (kill -9 during writes)",
        "restarts_that_cleaned_up": log.count("recovered from an interrupted run"),
        "ok": ok,
        "rounds": rounds,
        "acknowledged_studies": len(acked),
        "acknowledged_present": len(acked) - sum("missing" in p for p in result["problems"]),
        "committed_but_unacknowledged": state["studies_in_db"] - len(acked) - 3 * result["batches_finished"],
        "batch_jobs": len(jobs),
        "batch_jobs_finished_after_restart": result["batches_finished"],
        "write_errors_before_kill": write_errors[:10],
        "problems": result["problems"][:20],
        "database": state,
    }
    print(f"## Web crash test: {args.rounds} kill -9 rounds, {len(acked)} acknowledged studies\n")
    print(
        f"every acknowledged study present: {summary['acknowledged_present'] == len(acked)}; "
        f"batches finished after restart: {result['batches_finished']}/{len(jobs)}; "
        f"integrity_check: {state['integrity_check']}; orphans: {len(state['folders_without_row'])}; "
        f"result: {'PASS' if ok else 'FAIL'}\n"
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.data_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
