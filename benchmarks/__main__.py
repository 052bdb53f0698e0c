"""Run every benchmark in turn (``make bench``) and print all their tables.

    python -m benchmarks                      # everything, full sizes
    python -m benchmarks --quick              # everything, small sizes (minutes on 2 CPU cores)
    python -m benchmarks census_matrix api    # a subset (names as listed by --list)
    python -m benchmarks --list

Each benchmark runs in this process through its ``main(argv)``, prints its table and writes its JSON to
``benchmarks/out/bench_<name>.json`` (``benchmarks/out/quick/`` for a ``--quick`` run; git-ignored, so a
run never dirties the tree; ``--out DIR`` to change). The figures ``docs/`` cites stay in
``benchmarks/results/`` until someone copies a new run there on purpose. One failing benchmark does not stop
the others; the exit status is 1 when any failed. A summary table (wall time, load average before and after
each) closes the run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import OUT

#: name -> (module, full-size argv, quick argv); the order is the run order (cheapest first).
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "knn_shapley": ("benchmarks.bench_knn_shapley", [], ["--skip-large", "--loop-test-points", "20"]),
    "layer1_steps": ("benchmarks.bench_layer1_steps", [], ["--rows", "2000", "--epochs", "1", "--repeats", "1"]),
    "population": (
        "benchmarks.bench_population",
        [],
        ["--ks", "16", "--recipe-ks", "4", "--dp-k", "4", "--epochs", "1"],
    ),
    # One uvicorn worker in quick mode: two workers migrating one fresh SQLite file at once can race.
    "api": ("benchmarks.bench_api", [], ["--clients", "10", "--gets", "300", "--posts", "30", "--workers", "1"]),
    # Old poll path (the commit before the status endpoint, from git) vs the new one, SQLite and PostgreSQL.
    "poll": ("benchmarks.bench_poll", ["--profile"], ["--pollers", "20", "--seconds", "3", "--databases", "sqlite"]),
    "census_matrix": ("benchmarks.bench_census_matrix", ["--compare-populations"], ["--quick"]),
    # Four fresh `amulet assess` processes: 1 and 2 torch threads, idle and next to busy processes.
    "threads": ("benchmarks.bench_threads", [], []),
}


def _load() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def _run_one(name: str, quick: bool, out: Path) -> tuple[str, float, tuple[float, ...], tuple[float, ...]]:
    module_name, full_argv, quick_argv = BENCHMARKS[name]
    # Every benchmark takes --output; passing it here keeps the run off tracked files whatever its default.
    output = (out / "quick" if quick else out) / f"bench_{name}.json"
    argv = [*(quick_argv if quick else full_argv), "--output", str(output)]
    load_before = _load()
    start = time.perf_counter()
    status = "ok"
    try:
        module = importlib.import_module(module_name)
        module.main(argv)
    except SystemExit as exc:  # argparse errors
        status = "ok" if not exc.code else f"exit {exc.code}"
    except Exception as exc:
        traceback.print_exc()
        status = f"error: {type(exc).__name__}: {exc}"[:120]
    seconds = time.perf_counter() - start
    load_after = _load()
    return status, seconds, load_before, load_after


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, print their tables and a summary; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="small sizes; JSON under <out>/quick/")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the JSON (default: benchmarks/out/)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (module, _, quick) in BENCHMARKS.items():
            print(f"{name:<15} {module}  (--quick: {' '.join(quick) or 'same'})")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    names = [n for n in BENCHMARKS if n in args.names] if args.names else list(BENCHMARKS)
    summary = []
    for name in names:
        print(f"\n=== {name}{' (quick)' if args.quick else ''} ===", flush=True)
        summary.append((name, *_run_one(name, args.quick, args.out)))
        sys.stdout.flush()
    print(f"\n=== summary{' (quick)' if args.quick else ''} ===")
    header = f"{'benchmark':<15} {'wall s':>8}  {'load avg before':>17}  {'load avg after':>17}  status"
    print(header)
    print("-" * (len(header) + 10))
    for name, status, seconds, before, after in summary:
        fmt = "/".join(f"{v:.1f}" for v in before), "/".join(f"{v:.1f}" for v in after)
        print(f"{name:<15} {seconds:>8.1f}  {fmt[0]:>17}  {fmt[1]:>17}  {status}")
    return 1 if any(s[1] != "ok" for s in summary) else 0


if __name__ == "__main__":
    sys.exit(main())
