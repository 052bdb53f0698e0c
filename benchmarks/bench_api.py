"""API latency under concurrent clients: ``GET /assessments/{id}`` and ``POST /assessments``.

Starts the real service (uvicorn, embedded SQLite + SQLite broker under a temporary AMULET_HOME, or the
database/broker given with --database-url/--broker-url), seeds one assessment, then runs ``--clients``
concurrent clients on loopback and reports p50/p95/p99 latency and throughput. The issue's target (p99
under 50 ms for the GET with 50 clients) is reported, not asserted. No worker runs: POSTed assessments
stay queued, so only the API is measured.

    python -m benchmarks.bench_api [--clients 50] [--gets 2000] [--posts 200] [--workers 2]

Results: a table on stdout and ``benchmarks/out/bench_api.json`` (git-ignored; ``--output`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import OUT

ROOT = Path(__file__).resolve().parents[1]
RESULTS = OUT / "bench_api.json"
TOKEN = "amt_benchmark-admin-token-0123456789"
TARGET_P99_MS = 50.0
SPEC: dict[str, Any] = {
    "name": "bench",
    "dataset": {"name": "census", "training_size": 600, "test_size": 300},
    "model": {"architecture": "linearnet", "capacity": "m1"},
    "training": {"epochs": 1},
    "defenses": [{"defense": "outlier_removal"}],
    "risks": [{"risk": "evasion"}],
    "seeds": [0, 1],
}


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_api(url: str, server: subprocess.Popen[bytes], *, timeout: float, what: str) -> None:
    """Block until ``url``/health answers 200; RuntimeError if ``server`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.3)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _load(
    url: str, method: str, path: str, body: Any, total: int, clients: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    remaining = total
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            response = await client.request(method, path, json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status_code >= 400:
                errors += 1

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def _summary(name: str, latencies: list[float], errors: int, elapsed: float, clients: int) -> dict[str, Any]:
    return {
        "endpoint": name,
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the service, measure, stop it; returns the results document."""
    home = Path(tempfile.mkdtemp(prefix="amulet-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AMULET_HOME": str(home), "AMULET_ADMIN_TOKEN": TOKEN, "AMULET_DEVICE": "cpu"}
    if args.database_url:
        env["AMULET_DATABASE_URL"] = args.database_url
    if args.broker_url:
        env["AMULET_BROKER_URL"] = args.broker_url
    argv = [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port), "--log-level", "warning"]
    argv += ["--workers", str(args.workers)]
    server = subprocess.Popen(argv, env=env, cwd=ROOT)
    try:
        wait_for_api(url, server, timeout=120, what="the API")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        created = httpx.post(f"{url}/assessments", json={"spec": SPEC}, headers=headers, timeout=120)
        created.raise_for_status()
        path = f"/assessments/{created.json()['id']}"
        # warm-up (imports, connection pools, plan caches) before measuring
        asyncio.run(_load(url, "GET", path, None, 100, 10))
        asyncio.run(_load(url, "POST", "/assessments", {"spec": SPEC}, 10, 5))
        rows = []
        for name, method, target, body, total in (
            (f"GET {'/assessments/{id}'}", "GET", path, None, args.gets),
            ("POST /assessments", "POST", "/assessments", {"spec": SPEC}, args.posts),
        ):
            latencies, errors, elapsed = asyncio.run(_load(url, method, target, body, total, args.clients))
            rows.append(_summary(name, latencies, errors, elapsed, args.clients))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "benchmark": "api_latency",
        "database": args.database_url.split(":", 1)[0] if args.database_url else "sqlite (embedded)",
        "broker": args.broker_url.split(":", 1)[0] if args.broker_url else "sqla+sqlite (embedded)",
        "uvicorn_workers": args.workers,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "target": f"GET /assessments/{{id}} p99 < {TARGET_P99_MS} ms with 50 clients (reported, not asserted)",
        "results": rows,
        "get_meets_target": rows[0]["p99_ms"] < TARGET_P99_MS,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write its JSON to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--database-url", default="", help="e.g. postgresql+psycopg://postgres@127.0.0.1/bench")
    parser.add_argument("--broker-url", default="", help="e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--output", "--out", dest="out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)
    results = run(args)
    header = f"{'endpoint':<24}{'clients':>8}{'requests':>10}{'errors':>8}"
    header += f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}"
    print(f"API latency ({results['database']}, {results['broker']}, {args.workers} uvicorn workers)")
    print(header)
    print("-" * len(header))
    for row in results["results"]:
        print(
            f"{row['endpoint']:<24}{row['clients']:>8}{row['requests']:>10}{row['errors']:>8}"
            f"{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['throughput_rps']:>9.1f}"
        )
    print(f"target: {results['target']}; met: {results['get_meets_target']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")
    return results


if __name__ == "__main__":
    main()
