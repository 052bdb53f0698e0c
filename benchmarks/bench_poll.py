"""Polling an assessment's progress: the old path (``GET /assessments/{id}`` as it was, the whole cell list in
every answer) against the new one (``GET /assessments/{id}/status`` with ``If-None-Match``, 304 while nothing
changed), side by side in one run, on SQLite and on PostgreSQL.

For each database, two API servers run at once on the same machine: one from this tree and one from
``--old-ref`` (the last commit before the status endpoint, extracted with ``git archive``; same virtual
environment). Each gets a fresh database, one uvicorn process and no Celery worker; the benchmark
submits the same 120-cell assessment (census, 5 rows x 8 risks x 3 seeds), marks it running with half of
its cells finished (metrics and results stored, as the worker stores them) and, while the pollers run, a
writer finishes one more cell every ``--write-every`` seconds, as a worker would. ``--pollers`` clients each
poll every ``--interval`` seconds for ``--seconds``; the latency of every request is recorded (p50/p95/p99,
304 share). The measurements (old detail, new status, new detail) are interleaved and repeated
``--repeats`` times, their latencies pooled, so that a change of the machine's load hits every path alike.
``--profile`` samples each server under 20 pollers of its poll path with py-spy (SQLite) and reports where
the request threads spend their time.

    python -m benchmarks.bench_poll [--pollers 20 100] [--seconds 10] [--databases sqlite postgresql]

Results: a table on stdout and ``benchmarks/out/bench_poll.json`` (git-ignored; ``--output`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from amulet.settings import Settings
from backend import crud
from backend.core.db import dispose_engines, get_sessionmaker
from backend.models import Assessment, Event, utcnow
from benchmarks import OUT
from benchmarks.bench_api import free_port, percentile, wait_for_api

ROOT = Path(__file__).resolve().parents[1]
RESULTS = OUT / "bench_poll.json"
TOKEN = "amt_benchmark-admin-token-0123456789"
#: The last commit whose ``GET /assessments/{id}`` embedded every cell (before the status endpoint).
OLD_REF = "3ff0879"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
REDIS = "redis://127.0.0.1:6379/0"
SPEC: dict[str, Any] = {
    "name": "poll bench",
    "dataset": {"name": "census", "training_size": 600, "test_size": 300},
    "model": {"architecture": "linearnet", "capacity": "m1"},
    "training": {"epochs": 1},
    "defenses": [
        {"name": "adv", "defense": "adversarial_training"},
        {"name": "dp", "defense": "dp_sgd"},
        {"name": "outlier", "defense": "outlier_removal"},
        {"name": "debias", "defense": "adversarial_debiasing"},
    ],
    "risks": [
        {"risk": "evasion"},
        {"risk": "poisoning"},
        {"risk": "unauth_model_ownership"},
        {"risk": "membership_inference"},
        {"risk": "attribute_inference"},
        {"risk": "distribution_inference"},
        {"risk": "data_reconstruction"},
        {"risk": "discriminatory_behavior"},
    ],
    "seeds": [0, 1, 2],
}
#: Metrics stored per finished cell (what a real cell stores: a handful of numbers).
METRICS = {"accuracy": 0.84, "auc": 0.61, "advantage": 0.07, "ci_low": 0.55, "ci_high": 0.66, "seconds": 0.4}


def _old_tree(ref: str, into: Path) -> Path:
    """The sources of ``ref`` (``git archive``: nothing in this repository's working tree or index changes)."""
    archive = into / "old.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "archive", ref], cwd=ROOT, stdout=handle, check=True)
    tree = into / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    return tree


@contextmanager
def _database(kind: str) -> Iterator[tuple[str, str]]:
    """(database URL, broker URL) of a fresh database: '' for the embedded SQLite, else a new PostgreSQL one."""
    if kind == "sqlite":
        yield "", ""
        return
    import psycopg  # lazy: the optional PostgreSQL driver, needed only for --databases postgresql

    name = f"amulet_bench_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG.format(name=name), REDIS
    finally:
        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _server(code: Path, home: Path, database_url: str, broker_url: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    env = {
        **os.environ,
        "AMULET_HOME": str(home),
        "AMULET_ADMIN_TOKEN": TOKEN,
        "AMULET_DEVICE": "cpu",
        "AMULET_DATABASE_URL": database_url,
        "AMULET_BROKER_URL": broker_url,
        "PYTHONPATH": str(code),  # the old tree's packages before the editable install's
        "OMP_NUM_THREADS": "1",
    }
    argv = [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(argv, env=env, cwd=code)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_api(url, server, timeout=180, what=f"the API from {code}")
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _settings(home: Path, database_url: str) -> Any:
    return Settings(home=home, database_url=database_url, admin_token=TOKEN)


def _seed(url: str, home: Path, database_url: str) -> str:
    """Submit the assessment, mark it running with half its cells finished; returns its id."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = httpx.post(f"{url}/assessments", json={"spec": SPEC}, headers=headers, timeout=300)
    created.raise_for_status()
    assessment_id = str(created.json()["id"])
    with get_sessionmaker(_settings(home, database_url))() as session:
        # only columns both schemas have (the old server's database has the old schema)
        now = utcnow()
        session.execute(
            update(Assessment)
            .where(Assessment.id == assessment_id)
            .values(status="running", started_at=now, heartbeat_at=now)
        )
        for training in crud.list_trainings(session, assessment_id=assessment_id):
            crud.upsert_training(session, assessment_id=assessment_id, key=training.key, status="done", seconds=0.3)
        cells = crud.list_cells(session, assessment_id=assessment_id)
        for cell in cells[: len(cells) // 2]:
            _finish(session, assessment_id, cell)
        session.commit()
    return assessment_id


def _finish(session: Any, assessment_id: str, cell: Any) -> None:
    result = {
        "key": cell.key,
        "row": cell.row,
        "risk": cell.risk,
        "attack": cell.attack,
        "seed": cell.seed,
        "status": "ok",
        "metrics": METRICS,
        "seconds": 0.4,
    }
    crud.upsert_cell(session, assessment_id=assessment_id, key=cell.key, status="ok", metrics=METRICS, result=result)
    session.add(Event(assessment_id=assessment_id, kind="cell", key=cell.key, message="ok", info={}))


class _Writer(threading.Thread):
    """Finishes one pending cell every ``every`` seconds (what a worker's progress looks like to pollers); once
    none is left it reopens one instead, so that every measurement sees the same rate of change."""

    def __init__(self, home: Path, database_url: str, assessment_id: str, every: float) -> None:
        super().__init__(daemon=True)
        self.home, self.database_url, self.assessment_id, self.every = home, database_url, assessment_id, every
        self.stop = threading.Event()
        self.writes = 0

    def run(self) -> None:
        maker = get_sessionmaker(_settings(self.home, self.database_url))
        while not self.stop.wait(self.every):
            with maker() as session:
                pending, _ = crud.page_cells(
                    session, assessment_id=self.assessment_id, limit=1, offset=0, status="pending"
                )
                if pending:
                    _finish(session, self.assessment_id, pending[0])
                else:  # every cell finished: reopen one, so that every measurement sees the same rate of change
                    done, _ = crud.page_cells(session, assessment_id=self.assessment_id, limit=1, offset=0, status="ok")
                    crud.upsert_cell(session, assessment_id=self.assessment_id, key=done[0].key, status="pending")
                session.commit()
                self.writes += 1


async def _poll(url: str, path: str, pollers: int, seconds: float, interval: float, etag: bool) -> dict[str, Any]:
    """``pollers`` clients polling ``path`` every ``interval`` seconds for ``seconds``: every latency and status."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sizes: list[int] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)

    async def poller(client: httpx.AsyncClient, offset: float) -> None:
        tag = ""
        await asyncio.sleep(offset)  # spread the pollers over one interval, as independent clients are
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                response = await client.get(path, headers={"If-None-Match": tag} if etag and tag else None)
            except httpx.HTTPError:  # a dropped connection or a timeout: an error, and the poller goes on
                latencies.append((time.perf_counter() - start) * 1000)
                statuses[0] += 1
                await asyncio.sleep(interval)
                continue
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[response.status_code] += 1
            sizes.append(len(response.content))
            if etag and response.status_code == 200:
                tag = response.headers.get("etag", "")
            await asyncio.sleep(interval)

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        start = time.perf_counter()
        await asyncio.gather(*(poller(client, interval * i / pollers) for i in range(pollers)))
        elapsed = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "sizes": sizes, "elapsed": elapsed}


def _summary(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency percentiles and counts over every repetition of one measurement (latencies pooled)."""
    latencies = [v for r in raw for v in r["latencies"]]
    sizes = [v for r in raw for v in r["sizes"]]
    statuses: Counter[int] = Counter()
    for r in raw:
        statuses.update(r["statuses"])
    return {
        "requests": len(latencies),
        "errors": sum(n for code, n in statuses.items() if code >= 400 or code == 0),
        "connection_errors": statuses.get(0, 0),
        "not_modified_share": round(statuses.get(304, 0) / max(1, len(latencies)), 3),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "throughput_rps": round(len(latencies) / sum(r["elapsed"] for r in raw), 1),
        "mean_bytes": round(statistics.mean(sizes)) if sizes else 0,
    }


def _profile(pid: int, seconds: float, out: Path) -> list[dict[str, Any]]:
    """py-spy samples of the server (every thread); the project's frames by share of samples (inclusive)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return [{"frame": "py-spy is not installed (pip install py-spy)", "share": 0.0}]
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("routes/assessments.py" in f or "deps.py" in f for f in frames):
            continue  # idle threads, the event loop's own work
        busy += int(count)
        for frame in set(frames):
            name = frame.split(" (")[0]
            where = frame.split(" (")[-1].rstrip(")")
            if any(part in where for part in ("backend/", "sqlalchemy/", "pydantic", "fastapi/", "json")):
                inclusive[f"{name} ({where.split(':')[0].split('site-packages/')[-1]})"] += int(count)
    return [{"frame": f, "share": round(n / max(1, busy), 3)} for f, n in inclusive.most_common(15)]


def _both(old: Path, db: str, args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both servers up at once on fresh databases; the measurements interleaved (old, new, new detail) and
    repeated ``--repeats`` times, so that a change of the machine's load hits both paths alike."""
    rows: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    with _database(db) as (old_db, old_broker), _database(db) as (new_db, new_broker):
        old_home, new_home = tmp / f"{db}-old", tmp / f"{db}-new"
        with (
            _server(old, old_home, old_db, old_broker) as (old_url, old_server),
            _server(ROOT, new_home, new_db, new_broker) as (new_url, new_server),
        ):
            old_id = _seed(old_url, old_home, old_db)
            new_id = _seed(new_url, new_home, new_db)
            old_base, new_base = f"/assessments/{old_id}", f"/assessments/{new_id}"
            paths = [
                ("old", "GET /assessments/{id} (every cell)", old_url, old_base, False, old_home, old_db, old_id),
                (
                    "new",
                    "GET /assessments/{id}/status + ETag",
                    new_url,
                    f"{new_base}/status",
                    True,
                    new_home,
                    new_db,
                    new_id,
                ),
                ("new", "GET /assessments/{id} (no cells)", new_url, new_base, False, new_home, new_db, new_id),
            ]
            for _, _, url, path, etag, *_ in paths:
                asyncio.run(_poll(url, path, 5, 2.0, args.interval, etag))  # warm-up
            for pollers in args.pollers:
                raw: dict[str, list[dict[str, Any]]] = {label: [] for _, label, *_ in paths}
                writes: Counter[str] = Counter()
                load_before = os.getloadavg()
                for _ in range(args.repeats):
                    for _, label, url, path, etag, home, database_url, assessment_id in paths:
                        writer = _Writer(home, database_url, assessment_id, args.write_every)
                        writer.start()
                        raw[label].append(asyncio.run(_poll(url, path, pollers, args.seconds, args.interval, etag)))
                        writer.stop.set()
                        writer.join()
                        writes[label] += writer.writes
                for version, label, *_ in paths:
                    rows.append(
                        {
                            "database": db,
                            "code": version,
                            "path": label,
                            "pollers": pollers,
                            **_summary(raw[label]),
                            "repeats": args.repeats,
                            "cell_writes": writes[label],
                            "load_before": [round(v, 2) for v in load_before],
                            "load_after": [round(v, 2) for v in os.getloadavg()],
                        }
                    )
                    print(_line(rows[-1]), flush=True)
            if args.profile and db == "sqlite":
                for name, server, (_, _, url, path, etag, *_) in (
                    ("old", old_server, paths[0]),
                    ("new", new_server, paths[1]),
                ):
                    task = threading.Thread(
                        target=lambda u=url, p=path, e=etag: asyncio.run(
                            _poll(u, p, 20, args.seconds + 2, args.interval, e)
                        )
                    )
                    task.start()
                    time.sleep(1.0)
                    profiles[name] = _profile(server.pid, args.seconds, tmp / f"pyspy-{name}.txt")
                    task.join()
    return rows, profiles


HEADER = (
    f"{'database':<11}{'path':<38}{'pollers':>8}{'requests':>9}{'304 %':>7}"
    f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}{'bytes':>8}"
)


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['database']:<11}{row['path']:<38}{row['pollers']:>8}{row['requests']:>9}"
        f"{100 * row['not_modified_share']:>7.0f}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['p99_ms']:>9.1f}"
        f"{row['throughput_rps']:>8.1f}{row['mean_bytes']:>8}"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both code versions on every database; returns the results document."""
    tmp = Path(tempfile.mkdtemp(prefix="amulet-bench-poll-"))
    rows: list[dict[str, Any]] = []
    profile: dict[str, list[dict[str, Any]]] = {}
    try:
        old = _old_tree(args.old_ref, tmp)
        print(HEADER)
        print("-" * len(HEADER))
        for db in args.databases:
            measured, sampled = _both(old, db, args, tmp)
            rows += measured
            profile.update(sampled)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "benchmark": "poll_latency",
        "old_ref": args.old_ref,
        "new_ref": commit.stdout.strip() + " (working tree)",
        "assessment": "census, 5 rows x 8 risks x 3 seeds: 120 cells, 15 trainings; half the cells finished",
        "poll_interval_s": args.interval,
        "seconds_per_measurement": args.seconds,
        "repeats": args.repeats,
        "cell_finished_every_s": args.write_every,
        "uvicorn_workers": 1,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "results": rows,
        "profile_sqlite_20_pollers": profile,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write its JSON to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pollers", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of polling per measurement")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds each poller waits between polls")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions of each measurement")
    parser.add_argument("--write-every", type=float, default=0.5, help="seconds between two finished cells")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--old-ref", default=OLD_REF, help="the commit to measure the old path on")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of both paths (SQLite, 20 pollers)")
    parser.add_argument("--output", "--out", dest="out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)
    results = run(args)
    for name, frames in results["profile_sqlite_20_pollers"].items():
        print(f"py-spy, {name} path, SQLite, 20 pollers: share of the request threads' samples (inclusive)")
        for entry in frames:
            print(f"  {100 * entry['share']:5.1f} %  {entry['frame']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")
    return results


if __name__ == "__main__":
    main()
