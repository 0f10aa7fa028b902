"""Load test of ``brainxai serve`` on loopback: N concurrent clients for T seconds.

Starts the real server (real model) on 127.0.0.1, creates a user, seeds one patient with one
study, then runs a warm-up and a measured phase. Clients loop back to back (closed loop):

  * --analyze-clients of them (default 2) upload: ``POST /api/analyze`` with a sample JPEG
    (Grad-CAM; the service also computes LRP for its agreement check, and writes the PDF);
  * the others browse, picking at random ``GET /api/health`` (public, weight --w-health, default 2)
    or ``GET /api/patients/{id}/studies`` (the history, authenticated, weight --w-history, default 1).

Uploaders are few on purpose: an analysis costs seconds of CPU, so if every client uploaded, all
would soon wait in the inference queue and the test would measure only the queue.
All clients share one bearer token (login is argon2-bound by design and not what is measured).
An error is any exception or status other than 200 (GET) / 201 (POST); the target is 0.
Memory is the server's resident set size (VmRSS) after the warm-up and after the measured phase.
The run is bounded by --seconds and --max-requests and talks to 127.0.0.1 only.

Usage: python benchmarks/load.py [--clients 50] [--seconds 60] [--checkpoint CKPT | --random-checkpoint] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _server import prepare, token

from brainxai.web.process import ServerProcess, rss_bytes

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "brainxai" / "samples"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    @property
    def served(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def client_loop(
    index: int,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    history_url: str,
    scans: list[tuple[str, bytes]],
    weights: tuple[float, float, float],
    deadline: float,
    budget: list[int],
    tally: Tally,
) -> None:
    rng = random.Random(index)
    kinds = ("health", "history", "analyze")
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        kind = rng.choices(kinds, weights)[0]
        t0 = time.perf_counter()
        try:
            if kind == "health":
                r = await http.get("/api/health")
                ok = r.status_code == 200
            elif kind == "history":
                r = await http.get(history_url, headers=headers)
                ok = r.status_code == 200
            else:
                name, data = rng.choice(scans)
                r = await http.post(
                    "/api/analyze",
                    headers=headers,
                    files={"file": (name, data)},
                    data={"method": "gradcam", "patient_code": "LOAD-1"},
                )
                ok = r.status_code == 201
            detail = f"{kind}: HTTP {r.status_code} {r.text[:120]}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"{kind}: {type(exc).__name__} {exc}"
        elapsed = time.perf_counter() - t0
        if ok:
            tally.latencies.setdefault(kind, []).append(elapsed)
        else:
            tally.errors[kind] = tally.errors.get(kind, 0) + 1
            if len(tally.error_examples) < 10:
                tally.error_examples.append(detail)


async def run_phase(
    url: str,
    bearer: str,
    patient_id: int,
    clients: int,
    uploaders: int,
    seconds: float,
    max_requests: int,
    browse: tuple[float, float, float],
) -> tuple[Tally, float]:
    scans = [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*.jpg"))]
    headers = {"Authorization": f"Bearer {bearer}"}
    tally = Tally()
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    history = f"/api/patients/{patient_id}/studies"
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t0 = time.monotonic()
        deadline = t0 + seconds
        await asyncio.gather(
            *(
                client_loop(
                    i,
                    http,
                    headers,
                    history,
                    scans,
                    (0.0, 0.0, 1.0) if i < uploaders else browse,
                    deadline,
                    budget,
                    tally,
                )
                for i in range(clients)
            )
        )
        wall = time.monotonic() - t0
    return tally, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup-seconds", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=500_000, help="upper bound on requests in the measured phase")
    ap.add_argument("--analyze-clients", type=int, default=2, help="clients that only upload scans")
    ap.add_argument("--w-health", type=float, default=2.0)
    ap.add_argument("--w-history", type=float, default=1.0)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model to serve (default: the shipped model)")
    ap.add_argument("--random-checkpoint", action="store_true", help="serve an untrained efficientnet-lite0")
    ap.add_argument("--data-dir", type=Path, default=None, help="server data dir (default: a fresh temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = ap.parse_args()
    browse = (args.w_health, args.w_history, 0.0)

    data_dir, checkpoint, work = prepare(args.data_dir, args.checkpoint, args.random_checkpoint)
    with ServerProcess(data_dir, checkpoint, log_path=work / "server.log") as server:
        bearer = token(server)
        seed = httpx.post(
            f"{server.url}/api/analyze",
            headers={"Authorization": f"Bearer {bearer}"},
            files={"file": ("glioma.jpg", (SAMPLES / "glioma.jpg").read_bytes())},
            data={"patient_code": "LOAD-1"},
            timeout=300,
        )
        seed.raise_for_status()
        patient_id = seed.json()["patient"]["id"]
        health = httpx.get(f"{server.url}/api/health").json()

        phase = (server.url, bearer, patient_id, args.clients, args.analyze_clients)
        warm, _ = asyncio.run(run_phase(*phase, args.warmup_seconds, args.max_requests, browse))
        rss_before = rss_bytes(server.pid)
        tally, wall = asyncio.run(run_phase(*phase, args.seconds, args.max_requests, browse))
        rss_after = rss_bytes(server.pid)
        alive = httpx.get(f"{server.url}/api/health").status_code == 200

    all_lat = [x for v in tally.latencies.values() for x in v]
    summary = {
        "benchmark": "web load (loopback)",
        "clients": args.clients,
        "seconds": round(wall, 1),
        "uploading_clients": args.analyze_clients,
        "browse_weights": {"health": browse[0], "history": browse[1]},
        "model": health["model"].get("name"),
        "device": (health.get("device") or {}).get("name"),
        "requests_served": tally.served,
        "requests_per_s": round(tally.served / wall, 1),
        "errors": tally.error_count,
        "errors_by_kind": tally.errors,
        "error_examples": tally.error_examples,
        "latency_ms": {
            kind: {
                "n": len(v),
                "p50": round(1000 * statistics.median(v), 1),
                "p99": round(1000 * pct(v, 0.99), 1),
                "max": round(1000 * max(v), 1),
            }
            for kind, v in sorted(tally.latencies.items())
        },
        "latency_all_ms": {"p50": round(1000 * pct(all_lat, 0.5), 1), "p99": round(1000 * pct(all_lat, 0.99), 1)},
        "warmup_requests": warm.served,
        "server_rss_mb": {
            "after_warmup": round(rss_before / 1e6, 1),
            "after_run": round(rss_after / 1e6, 1),
            "growth": round((rss_after - rss_before) / 1e6, 1),
        },
        "server_alive_after": alive,
        "host": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }
    lines = [
        f"## Web load test: {args.clients} clients, {wall:.0f} s, loopback",
        "",
        f"served {tally.served} requests ({summary['requests_per_s']}/s), errors {tally.error_count}, "
        f"server RSS {summary['server_rss_mb']['after_warmup']} -> {summary['server_rss_mb']['after_run']} MB "
        f"({summary['server_rss_mb']['growth']:+} MB)",
        "",
        "| request | n | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        *(f"| {k} | {v['n']} | {v['p50']} | {v['p99']} | {v['max']} |" for k, v in summary["latency_ms"].items()),
        "",
    ]
    print("\n".join(lines))
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.data_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
