"""Intra-op threads: one census assessment with 2, 1 or automatic torch threads, on an idle and a busy machine.

Each run is a fresh process (``amulet assess`` with ``AMULET_NUM_THREADS``, a fresh model and cell cache),
so the runs are independent; ``--threads 0`` is the automatic setting (the default), whose choice the
assessment records (``torch_threads``). "Busy" means the benchmark itself starts ``--busy`` processes that spin
on a core each for the duration of the run (what a second worker task, a test suite or another user does
to a shared machine); "idle" runs with nothing added (the load average before and after each run shows
what else was running). The table gives each run's wall time and, per condition, each setting's time over
the 1-thread time: above 1 means one thread is faster.

    python -m benchmarks.bench_threads [--spec benchmarks/specs/census-threads.yaml] [--busy 2] [--threads 2 1 0]

Results: a table on stdout and ``benchmarks/out/bench_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "specs" / "census-threads.yaml"
RESULTS = ROOT / "benchmarks" / "out" / "bench_threads.json"


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _assess(spec: Path, threads: int, busy: int) -> dict[str, Any]:
    """One ``amulet assess`` run in a fresh process with ``threads`` torch threads next to ``busy`` spinners."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL) for _ in range(busy)
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="amulet-bench-threads-") as tmp:
            env = {**os.environ, "AMULET_NUM_THREADS": str(threads), "AMULET_DEVICE": "cpu"}
            argv = [sys.executable, "-m", "amulet", "assess", str(spec), "--out", f"{tmp}/report"]
            argv += ["--cache-dir", f"{tmp}/cache", "--format", "json", "--quiet"]
            load_before = _load()
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            results = json.loads(Path(f"{tmp}/report/results.json").read_text()) if done.returncode in (0, 1) else {}
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    if done.returncode not in (0, 1):  # 1 = a policy check failed, which is a result, not an error
        raise RuntimeError(f"amulet assess failed ({done.returncode}): {done.stderr[-2000:]}")
    cells = results.get("cells", [])
    return {
        "threads": threads,
        "busy_processes": busy,
        "seconds": round(seconds, 2),
        "cells_ok": sum(1 for c in cells if c.get("status") == "ok"),
        "cells": len(cells),
        "torch_threads_reported": ((results.get("reproducibility") or {}).get("hardware") or {}).get("torch_threads"),
        "load_before": load_before,
        "load_after": _load(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and write the JSON results; returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[2, 1, 0], help="thread counts to compare (0: automatic)"
    )
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes of the busy runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    runs = [_assess(args.spec, threads, busy) for busy in (0, args.busy) for threads in args.threads]
    header = f"{'machine':<22}{'threads':>8}{'chose':>6}{'wall s':>9}{'cells ok':>10}"
    header += f"  {'load before':>17}  {'load after':>17}"
    lines = [header, "-" * len(header)]
    ratios: dict[str, float] = {}
    for busy in (0, args.busy):
        label = "idle" if busy == 0 else f"busy ({busy} spinners)"
        mine = [r for r in runs if r["busy_processes"] == busy]
        for r in mine:
            lines.append(
                f"{label:<22}{r['threads'] or 'auto':>8}{r['torch_threads_reported'] or '-':>6}{r['seconds']:>9.1f}"
                f"{r['cells_ok']:>6}/{r['cells']:<3}  "
                f"{' / '.join(map(str, r['load_before'])):>17}  {' / '.join(map(str, r['load_after'])):>17}"
            )
        by_threads = {r["threads"]: r["seconds"] for r in mine}
        if 1 in by_threads:
            for threads, seconds in by_threads.items():
                if threads == 1:
                    continue
                name = "auto" if threads == 0 else f"{threads} threads"
                ratios[f"{label}: {name} / 1 thread"] = round(seconds / by_threads[1], 2)
                lines.append(f"{'':<22}{name} / 1 thread = {seconds / by_threads[1]:.2f}x")
    sys.stdout.write("\n".join(lines) + "\n")
    result = {
        "benchmark": "threads",
        "spec": str(args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "ratio_over_one_thread": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
