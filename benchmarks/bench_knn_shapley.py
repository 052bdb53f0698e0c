"""KNN-Shapley: vectorised exact kernel vs a straightforward per-test-point loop, and peak memory at scale.

1. Throughput at 5,000 training x 1,000 test points (features of width 128): the library's
   :func:`amulet.poisoning.defenses.knn_shapley` against the straightforward implementation (per test
   point: NumPy distances, argsort, the recursion as a Python loop over the training points; upstream
   Amulet's approach). The loop is timed on ``--loop-test-points`` test points and extrapolated
   linearly to 1,000 (it is linear in the number of test points); both results are checked equal.
2. Peak memory and time at 50,000 training x 10,000 test points of width 128, in a fresh process:
   peak resident memory above the inputs (``ru_maxrss`` minus the RSS after the inputs exist).

3. Scaling: the vectorised kernel's time as the training set grows (n = 5k ... 50k at m = 1,000 test
   points) and as the test set grows (m = 1k ... 10k at n = 5,000), with the time per million (n, m)
   pairs, which stays flat when the cost is linear in n * m.

Targets from the issue (reported, not asserted): the large run under 60 s and under 1 GB.

    python -m benchmarks.bench_knn_shapley [--loop-test-points 100] [--skip-large] [--skip-scaling]

Results: a table on stdout and ``benchmarks/out/bench_knn_shapley.json`` (git-ignored; ``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amulet.poisoning.defenses import knn_shapley
from benchmarks import OUT

ROOT = Path(__file__).resolve().parents[1]
RESULTS = OUT / "bench_knn_shapley.json"
TARGET_SECONDS = 60.0
TARGET_MB = 1024.0


def loop_knn_shapley(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int
) -> np.ndarray:
    """The straightforward implementation: one test point at a time, the recursion in Python."""
    n = len(x_train)
    values = np.zeros(n)
    for q, label in zip(x_test, y_test):
        order = np.argsort(((x_train - q) ** 2).sum(1), kind="stable")
        match = y_train[order] == label
        s = np.zeros(n)
        s[n - 1] = float(match[n - 1]) / n
        for i in range(n - 2, -1, -1):  # 0-based: rank i + 1
            s[i] = s[i + 1] + (float(match[i]) - float(match[i + 1])) / k * min(k, i + 1) / (i + 1)
        values[order] += s
    return values / len(x_test)


def throughput(loop_test_points: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n_train, n_test, width, k = 5000, 1000, 128, 5
    x_train = rng.normal(size=(n_train, width)).astype(np.float32)
    x_test = rng.normal(size=(n_test, width)).astype(np.float32)
    y_train, y_test = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)

    start = time.perf_counter()
    fast = knn_shapley(torch.from_numpy(x_train), y_train, torch.from_numpy(x_test), y_test, k=k).numpy()
    fast_s = time.perf_counter() - start

    m = min(loop_test_points, n_test)
    start = time.perf_counter()
    slow_part = loop_knn_shapley(x_train, y_train, x_test[:m], y_test[:m], k)
    loop_part_s = time.perf_counter() - start
    fast_part = knn_shapley(torch.from_numpy(x_train), y_train, torch.from_numpy(x_test[:m]), y_test[:m], k=k).numpy()
    loop_s = loop_part_s * n_test / m
    return {
        "n_train": n_train,
        "n_test": n_test,
        "width": width,
        "k": k,
        "vectorised_s": fast_s,
        "loop_s_extrapolated": loop_s,
        "loop_test_points_timed": m,
        "speedup": loop_s / fast_s,
        "max_abs_difference": float(np.abs(slow_part - fast_part).max()),
        "vectorised_test_points_per_s": n_test / fast_s,
        "values_sum": float(fast.sum()),
    }


#: (n training points, m test points) of the scaling table: n grows at m = 1,000, then m grows at n = 5,000.
SCALING: list[tuple[int, int]] = [
    *[(n, 1_000) for n in (5_000, 10_000, 20_000, 50_000)],
    *[(5_000, m) for m in (2_000, 5_000, 10_000)],
]


def scaling(sizes: list[tuple[int, int]], width: int = 128, seed: int = 0) -> list[dict[str, Any]]:
    """Wall time of the vectorised kernel at each (n, m), with the time per million (n, m) pairs."""
    gen = torch.Generator().manual_seed(seed)
    knn_shapley(torch.randn(100, width), np.zeros(100, int), torch.randn(10, width), np.zeros(10, int), k=5)  # warm-up
    rows = []
    for n, m in sizes:
        x_train, x_test = torch.randn(n, width, generator=gen), torch.randn(m, width, generator=gen)
        y_train = torch.randint(0, 10, (n,), generator=gen)
        y_test = torch.randint(0, 10, (m,), generator=gen)
        start = time.perf_counter()
        knn_shapley(x_train, y_train, x_test, y_test, k=5)
        seconds = time.perf_counter() - start
        rows.append({"n_train": n, "n_test": m, "seconds": seconds, "s_per_million_pairs": seconds / (n * m / 1e6)})
    return rows


_LARGE_CHILD = r"""
import json, resource, sys, time
import torch
from amulet.poisoning.defenses import knn_shapley

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (__import__("os").sysconf("SC_PAGE_SIZE")) / 2**20

n_train, n_test, width = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
gen = torch.Generator().manual_seed(0)
x_train = torch.randn(n_train, width, generator=gen)
x_test = torch.randn(n_test, width, generator=gen)
y_train = torch.randint(0, 10, (n_train,), generator=gen)
y_test = torch.randint(0, 10, (n_test,), generator=gen)
base = rss_mb()
start = time.perf_counter()
values = knn_shapley(x_train, y_train, x_test, y_test, k=5)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_inputs_mb": base, "peak_rss_mb": peak, "peak_above_inputs_mb": peak - base,
                  "values_sum": float(values.sum())}))
"""


def large(n_train: int = 50_000, n_test: int = 10_000, width: int = 128) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _LARGE_CHILD, str(n_train), str(n_test), str(width)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update({"n_train": n_train, "n_test": n_test, "width": width})
    result["meets_time_target"] = result["seconds"] < TARGET_SECONDS
    result["meets_memory_target"] = result["peak_above_inputs_mb"] < TARGET_MB
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table, write its JSON to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop-test-points", type=int, default=100, help="test points timed for the Python loop")
    parser.add_argument("--skip-large", action="store_true", help="skip the 50k x 10k memory run")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the scaling table in n and m")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_1min_at_start": os.getloadavg()[0],
        },
        "throughput": throughput(args.loop_test_points),
    }
    if not args.skip_large:
        results["large"] = large()
    if not args.skip_scaling:
        results["scaling"] = scaling(SCALING)

    t = results["throughput"]
    rows = [
        ("5k x 1k, vectorised", f"{t['vectorised_s']:.2f} s", f"{t['vectorised_test_points_per_s']:.0f} test pts/s"),
        (
            "5k x 1k, Python loop",
            f"{t['loop_s_extrapolated']:.2f} s",
            f"extrapolated from {t['loop_test_points_timed']}",
        ),
        ("speedup", f"{t['speedup']:.0f}x", f"max |diff| {t['max_abs_difference']:.1e}"),
    ]
    if "large" in results:
        g = results["large"]
        rows.append(("50k x 10k, vectorised", f"{g['seconds']:.1f} s", f"target < {TARGET_SECONDS:.0f} s"))
        rows.append(("50k x 10k, peak memory", f"{g['peak_above_inputs_mb']:.0f} MB", f"target < {TARGET_MB:.0f} MB"))
    width = max(len(r[0]) for r in rows)
    print(f"{'KNN-Shapley (k=5, width 128)':<{width}}  {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    if "scaling" in results:
        print(f"{'scaling':<12}{'n train':>9}{'m test':>9}{'seconds':>10}{'s per 1e6 (n, m) pairs':>25}")
        for r in results["scaling"]:
            print(f"{'':<12}{r['n_train']:>9,}{r['n_test']:>9,}{r['seconds']:>10.2f}{r['s_per_million_pairs']:>25.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.output}")
    return results


if __name__ == "__main__":
    main()
