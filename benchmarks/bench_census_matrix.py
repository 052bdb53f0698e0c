"""The census interaction matrix end to end: wall time, peak memory, per-training and per-cell breakdown.

Runs ``benchmarks/specs/census-matrix.yaml`` (baseline + adversarial training + DP-SGD + outlier removal +
adversarial debiasing against all eight risks, 3 seeds) through the engine's independent units
(:func:`amulet.assess.run_training` for every model, then :func:`amulet.assess.run_cell` for every cell, as
:func:`amulet.assess.run_assessment` does, minus the reports), into a fresh cache, with ``reuse_cells=False``.
Then it runs the same plan twice more against the now-warm cache, side by side: "re-run, cells recomputed"
(``reuse_cells=False``: every model is reused, every cell's attack runs again; JSON key ``cache_hit``, as
before the cell cache existed) and "re-run, cells reused" (``reuse_cells=True``: every ``ok`` cell comes from
the cell-result cache; JSON key ``cells_reused``), and prints the ratio of the two (``rerun_ratio``).

``--compare-populations`` adds a fourth phase: the cold run again, into another fresh cache, with
``AMULET_POPULATION_MODE=sequential`` (every LiRA-shadow and distribution-inference population trained one
model at a time instead of as one stacked ensemble; JSON key ``cold_sequential_populations``), and prints
its ratio to the cold phase (``population_ratio``). It runs after the cold phase, on a warm process, so
the ratio does not favour the stacked run.

Peak memory is the process's peak resident set (``resource.getrusage().ru_maxrss``, which covers torch's
tensors); ``--tracemalloc`` adds the Python-heap peak (tracemalloc slows Python-heavy code, so it is off by
default). The 1/5/15-minute load average is recorded before and after each phase: the machine is shared.
``--profile`` runs the cold phase under pyinstrument and writes its text and HTML reports next to the JSON.

    python -m benchmarks.bench_census_matrix [--seeds 0 1 2] [--quick] [--profile] [--spec FILE] [--device cuda]

Results: a table on stdout, ``benchmarks/results/bench_census_matrix.json`` (timings) and, with
``--save-results``, the :class:`~amulet.assess.AssessmentResults` of the cold run (matrix, intervals).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from amulet.assess import aggregate_results, load_spec, plan_assessment, run_cell, run_training
from amulet.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "specs" / "census-matrix.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "bench_census_matrix.json"
TARGET_SECONDS = 30 * 60.0


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _rss_mb() -> float:
    """Peak resident set of this process so far, MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def _phase(plan: Any, cache_dir: Path, device: str | None, log: Any, *, reuse_cells: bool) -> dict[str, Any]:
    """Every training, then every cell (``reuse_cells``: take cached cell results); per-unit seconds and statuses."""
    out: dict[str, Any] = {
        "reuse_cells": reuse_cells,
        "trainings": [],
        "cells": [],
        "load_before": _load(),
        "_records": [],
    }
    start = time.perf_counter()
    failed: set[str] = set()
    for t in plan.trainings:
        t0 = time.perf_counter()
        try:
            rec = run_training(plan, t.key, cache_dir=cache_dir, device=device)
            status, acc = rec["status"], rec.get("test_accuracy")
            out["_records"].append(rec)
        except Exception as exc:  # recorded, as run_assessment does
            status, acc = f"error: {type(exc).__name__}: {exc}"[:200], None
            failed.add(t.key)
        sec = time.perf_counter() - t0
        out["trainings"].append(
            {"key": t.key, "row": t.row, "seed": t.seed, "status": status, "seconds": sec, "test_accuracy": acc}
        )
        log(f"  train {t.row:<24} seed {t.seed}  {status:<8} {sec:7.2f} s")
    out["training_seconds"] = time.perf_counter() - start
    cells_start = time.perf_counter()
    results = []
    for c in plan.cells:
        if c.training_key in failed:
            continue
        result = run_cell(plan, c.key, cache_dir=cache_dir, device=device, reuse_cells=reuse_cells)
        results.append(result)
        out["cells"].append(
            {
                "key": c.key,
                "row": c.row,
                "risk": c.risk,
                "attack": c.attack,
                "seed": c.seed,
                "status": result.status,
                "seconds": result.seconds,
                "cached": result.cached,
                "computed_seconds": result.computed_seconds,
                "reason": result.reason[:200],
            }
        )
        how = "reused" if result.cached else ""
        log(f"  cell  {c.row:<24} {c.risk:<24} seed {c.seed}  {result.status:<7} {result.seconds:7.2f} s {how}")
    out["cell_seconds"] = time.perf_counter() - cells_start
    out["cells_cached"] = sum(1 for r in results if r.cached)
    out["seconds"] = time.perf_counter() - start
    out["load_after"] = _load()
    out["_cell_results"] = results
    return out


def _skipped(reuse_cells: bool) -> dict[str, Any]:
    """A phase that did not run (``--no-rerun``)."""
    return {
        "reuse_cells": reuse_cells,
        "seconds": 0.0,
        "training_seconds": 0.0,
        "cell_seconds": 0.0,
        "cells_cached": 0,
        "trainings": [],
        "cells": [],
        "load_before": _load(),
        "load_after": _load(),
    }


def _breakdown(phase: dict[str, Any]) -> dict[str, Any]:
    by_row: dict[str, list[float]] = defaultdict(list)
    for t in phase["trainings"]:
        by_row[t["row"]].append(t["seconds"])
    by_col: dict[str, list[float]] = defaultdict(list)
    by_row_cells: dict[str, list[float]] = defaultdict(list)
    for c in phase["cells"]:
        by_col[f"{c['risk']}/{c['attack']}"].append(c["seconds"])
        by_row_cells[c["row"]].append(c["seconds"])

    def stats(values: list[float]) -> dict[str, float]:
        return {"n": len(values), "total_s": sum(values), "mean_s": sum(values) / len(values), "max_s": max(values)}

    return {
        "training_by_row": {k: stats(v) for k, v in by_row.items()},
        "cells_by_column": {k: stats(v) for k, v in by_col.items()},
        "cells_by_row": {k: stats(v) for k, v in by_row_cells.items()},
    }


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def _ratio(recomputed: float, reused: float) -> float | None:
    return recomputed / reused if reused > 0 else None


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1f}x"


@contextlib.contextmanager
def _population_mode(mode: str) -> Iterator[None]:
    """Run the enclosed phase with ``AMULET_POPULATION_MODE=mode`` (the settings cache is refreshed)."""
    before = os.environ.get("AMULET_POPULATION_MODE")
    os.environ["AMULET_POPULATION_MODE"] = mode
    get_settings.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("AMULET_POPULATION_MODE", None)
        else:
            os.environ["AMULET_POPULATION_MODE"] = before
        get_settings.cache_clear()


def _table(result: dict[str, Any]) -> str:
    cold, recomputed, reused = result["cold"], result["cache_hit"], result["cells_reused"]
    b = result["breakdown"]
    lines = [
        f"Census matrix: {result['rows']} rows x {result['columns']} columns x {len(result['seeds'])} seeds "
        f"= {result['trainings']} trainings, {result['cells']} cells (device {result['machine']['device']})",
        f"{'phase':<34}{'wall s':>9}  {'load avg before':>17}  {'load avg after':>17}",
    ]
    phases = (
        ("cold (fresh cache)", cold),
        ("re-run, cells recomputed", recomputed),
        ("re-run, cells reused", reused),
    )
    for name, ph in phases:
        fb = "/".join(f"{v:.1f}" for v in ph["load_before"])
        fa = "/".join(f"{v:.1f}" for v in ph["load_after"])
        lines.append(f"{name:<34}{ph['seconds']:>9.1f}  {fb:>17}  {fa:>17}")
        lines.append(f"{'  of which trainings':<34}{ph['training_seconds']:>9.1f}")
        lines.append(f"{'  of which cells':<34}{ph['cell_seconds']:>9.1f}")
    if result.get("rerun_ratio") is not None:
        lines.append(
            f"re-run recomputed/reused: {recomputed['seconds']:.2f} s / {reused['seconds']:.2f} s = "
            f"{result['rerun_ratio']:.1f}x (cells only: {_times(result['rerun_cell_ratio'])}); "
            f"{reused['cells_cached']} of {len(reused['cells'])} cells reused, "
            f"{result['reused_matches_recomputed']} with metrics identical to the recomputed re-run"
        )
    seq = result.get("cold_sequential_populations")
    if seq:
        fb = "/".join(f"{v:.1f}" for v in seq["load_before"])
        fa = "/".join(f"{v:.1f}" for v in seq["load_after"])
        lines.append(f"{'cold, populations one by one':<34}{seq['seconds']:>9.1f}  {fb:>17}  {fa:>17}")
        lines.append(
            f"cold, populations one by one / stacked: {seq['seconds']:.1f} s / {cold['seconds']:.1f} s = "
            f"{result['population_ratio']:.2f}x"
        )
    lines.append(f"peak RSS (process) {result['peak_rss_mb']:.0f} MB; RSS before {result['rss_before_mb']:.0f} MB")
    if result.get("tracemalloc_peak_mb") is not None:
        lines.append(f"tracemalloc peak (Python heap, cold phase) {result['tracemalloc_peak_mb']:.1f} MB")
    verdict = "met" if cold["seconds"] < TARGET_SECONDS else "NOT met"
    lines.append(f"target: cold run under {TARGET_SECONDS / 60:.0f} min -> {verdict}")
    lines.append("")
    lines.append(f"{'training (per row)':<28}{'n':>4}{'mean s':>9}{'max s':>9}{'total s':>9}")
    for row, s in b["training_by_row"].items():
        lines.append(f"{row:<28}{s['n']:>4}{s['mean_s']:>9.2f}{s['max_s']:>9.2f}{s['total_s']:>9.1f}")
    lines.append("")
    lines.append(f"{'cells (per column)':<52}{'n':>4}{'mean s':>9}{'max s':>9}{'total s':>9}")
    for col, s in sorted(b["cells_by_column"].items(), key=lambda kv: -kv[1]["total_s"]):
        lines.append(f"{col:<52}{s['n']:>4}{s['mean_s']:>9.2f}{s['max_s']:>9.2f}{s['total_s']:>9.1f}")
    lines.append("")
    lines.append(f"{'cells (per row)':<28}{'n':>4}{'mean s':>9}{'max s':>9}{'total s':>9}")
    for row, s in b["cells_by_row"].items():
        lines.append(f"{row:<28}{s['n']:>4}{s['mean_s']:>9.2f}{s['max_s']:>9.2f}{s['total_s']:>9.1f}")
    statuses: dict[str, int] = defaultdict(int)
    for c in cold["cells"]:
        statuses[c["status"]] += 1
    lines.append("cell statuses (cold): " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and write the JSON results; returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="assessment spec (default: the census matrix)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the spec's seeds")
    parser.add_argument("--quick", action="store_true", help="one seed (0)")
    parser.add_argument("--device", default=None, help="torch device (default: the settings' device)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: a fresh temporary one)")
    parser.add_argument("--no-rerun", action="store_true", help="skip both re-runs (cells recomputed, cells reused)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python-heap peak (slower)")
    parser.add_argument("--profile", action="store_true", help="profile the cold phase with pyinstrument")
    parser.add_argument("--save-results", type=Path, default=None, help="write the cold run's AssessmentResults JSON")
    parser.add_argument(
        "--compare-populations",
        action="store_true",
        help="also run the cold phase with populations trained one by one (AMULET_POPULATION_MODE=sequential)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per training and cell")
    args = parser.parse_args(argv)

    spec = load_spec(args.spec)
    seeds = [0] if args.quick and args.seeds is None else args.seeds
    if seeds is not None:
        spec = spec.model_copy(update={"seeds": list(seeds)})
    plan = plan_assessment(spec)
    log = (lambda s: print(s, flush=True)) if args.verbose else (lambda s: None)

    tmp = None
    cache_dir = args.cache_dir
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="amulet-bench-cache-")
        cache_dir = Path(tmp)
    rss_before = _rss_mb()
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
        profiler.start()
    if args.tracemalloc:
        tracemalloc.start()
    try:
        cold = _phase(plan, cache_dir, args.device, log, reuse_cells=False)
        trace_peak = None
        if args.tracemalloc:
            trace_peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
            tracemalloc.stop()
        if profiler is not None:
            profiler.stop()
        peak_rss = _rss_mb()
        if args.no_rerun:
            recomputed, reused = _skipped(False), _skipped(True)
        else:
            log("re-run, cells recomputed (reuse_cells=False)")
            recomputed = _phase(plan, cache_dir, args.device, log, reuse_cells=False)
            log("re-run, cells reused (reuse_cells=True)")
            reused = _phase(plan, cache_dir, args.device, log, reuse_cells=True)
        sequential = None
        if args.compare_populations:
            log("cold again, populations one by one (AMULET_POPULATION_MODE=sequential)")
            with (
                tempfile.TemporaryDirectory(prefix="amulet-bench-cache-seq-") as seq_cache,
                _population_mode("sequential"),
            ):
                sequential = _phase(plan, Path(seq_cache), args.device, log, reuse_cells=False)
            sequential.pop("_cell_results", None)
            sequential.pop("_records", None)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    cell_results = cold.pop("_cell_results")
    records = cold.pop("_records")
    matches = sum(
        1
        for a, b in zip(recomputed.pop("_cell_results", []), reused.pop("_cell_results", []))
        if a.key == b.key and b.cached and a.status == b.status == "ok" and _same_metrics(a.metrics, b.metrics)
    )
    recomputed.pop("_records", None)
    reused.pop("_records", None)
    result: dict[str, Any] = {
        "benchmark": "census_matrix",
        "spec": str(args.spec.resolve().relative_to(ROOT) if args.spec.resolve().is_relative_to(ROOT) else args.spec),
        "seeds": list(spec.seeds),
        "rows": len(plan.rows),
        "columns": len(plan.columns),
        "trainings": len(plan.trainings),
        "cells": len(plan.cells),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": args.device or "settings default",
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "cold": cold,
        "cache_hit": recomputed,  # the re-run with every cell recomputed (the meaning this key always had)
        "cells_reused": reused,
        "rerun_ratio": None if args.no_rerun else _ratio(recomputed["seconds"], reused["seconds"]),
        "rerun_cell_ratio": None if args.no_rerun else _ratio(recomputed["cell_seconds"], reused["cell_seconds"]),
        "reused_matches_recomputed": matches,
        "cold_sequential_populations": sequential,
        "population_ratio": None if sequential is None else _ratio(sequential["seconds"], cold["seconds"]),
        "breakdown": _breakdown(cold),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss,
        "tracemalloc_peak_mb": trace_peak,
        "target_seconds": TARGET_SECONDS,
    }
    statuses = {s: sum(1 for c in cold["cells"] if c["status"] == s) for s in ("ok", "not_run", "error")}
    result["cell_statuses"] = statuses
    sys.stdout.write(_table(result) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if profiler is not None:
        stem = args.output.with_suffix("")
        Path(f"{stem}.profile.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        Path(f"{stem}.profile.html").write_text(profiler.output_html())
        result["profile"] = [f"{stem.name}.profile.txt", f"{stem.name}.profile.html"]
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.save_results is not None:
        aggregated = aggregate_results(plan, cell_results, trainings=records)
        args.save_results.parent.mkdir(parents=True, exist_ok=True)
        args.save_results.write_text(aggregated.model_dump_json(indent=1))
    return result


if __name__ == "__main__":
    main()
