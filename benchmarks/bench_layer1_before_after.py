"""The layer-1 matrix (``bench_layer1.py``) with some files as they were at a git revision, against the tree now.

A change's speed-up is measured side by side: the package is copied to a temporary folder with ``--paths`` put
back to their content at ``--rev`` (files added since are removed, so the copy is the tree before the change and
nothing else; without ``--paths``, the whole package as it was at ``--rev``: use that when other files now
depend on names the change added), and ``bench_layer1.py`` runs on that copy and on the working tree,
alternately, ``--repeats`` times, each in a fresh subprocess, on the same data and arguments. The per-cell
times, the ratio before / after (medians over the repeats) and the load average at each cell's start are printed
and written to ``benchmarks/out/layer1/before_after.json``.

    python -m benchmarks.bench_layer1_before_after --rev 081f61c [--paths amulet/utils/_training.py ...] \\
        -- --target 6000 --adversary 6000 --test 4000 --epochs 5 --rows none dp_sgd --skip-once
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_layer1_compare import OUT, ROOT, SCRIPT, prepare_census


def old_tree(rev: str, paths: list[str] | None, folder: Path) -> Path:
    """A copy of ``amulet/`` with ``paths`` as they were at ``rev`` (absent there: removed); all of it without paths."""
    if not paths:
        archive = subprocess.run(["git", "archive", rev, "amulet"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        return folder
    shutil.copytree(ROOT / "amulet", folder / "amulet", ignore=shutil.ignore_patterns("__pycache__"))
    for path in paths:
        target = folder / path
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True)
        if shown.returncode == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(shown.stdout)
        elif target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    return folder


def run(label: str, pythonpath: Path, root: Path, extra: list[str], env_extra: dict[str, str]) -> dict[str, Any]:
    output = OUT / f"before_after_{label}.json"
    output.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(env_extra, PYTHONPATH=str(pythonpath))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), "--output", str(output), *extra],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0 or not output.exists():
        raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(output.read_text())
    expected = (pythonpath / "amulet").resolve()
    if not Path(result["amulet_file"]).resolve().is_relative_to(expected):
        raise RuntimeError(f"{label} imported {result['amulet_file']}, not the copy under {expected}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", required=True, help="git revision of the 'before' side")
    parser.add_argument(
        "--paths", nargs="+", help="files (or folders) to take from --rev (default: the whole package as at --rev)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", default="", help="OMP/torch threads for both sides (empty: each default)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    OUT.mkdir(parents=True, exist_ok=True)
    root = prepare_census(OUT / "root")
    env = {"OMP_NUM_THREADS": args.threads, "AMULET_NUM_THREADS": args.threads} if args.threads else {}
    times: dict[str, dict[tuple[str, str], list[float]]] = {"before": {}, "after": {}}
    loads: dict[str, dict[tuple[str, str], list[float]]] = {"before": {}, "after": {}}
    metrics: dict[str, dict[tuple[str, str], Any]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="amulet_before_") as tmp:
        before = old_tree(args.rev, args.paths, Path(tmp))
        for repeat in range(args.repeats):
            for label, path in (("before", before), ("after", ROOT)):
                result = run(f"{label}_{repeat}", path, root, extra, env)
                for cell in result["cells"]:
                    key = (cell["row"], cell["risk"])
                    times[label].setdefault(key, []).append(cell["seconds"] if cell["status"] == "ok" else float("nan"))
                    loads[label].setdefault(key, []).append(cell["load_before"])
                    metrics[label][key] = cell.get("metric") or cell.get("error")
    rows = []
    print(f"{'row':<22} {'risk':<22} {'before s':>9} {'after s':>8} {'ratio':>6}  load(before/after)")
    for key in times["after"]:
        b, a = statistics.median(times["before"].get(key, [float("nan")])), statistics.median(times["after"][key])
        ratio = b / a if a > 0 else float("nan")
        load = f"{statistics.median(loads['before'].get(key, [0])):.1f}/{statistics.median(loads['after'][key]):.1f}"
        print(f"{key[0]:<22} {key[1]:<22} {b:>9.2f} {a:>8.2f} {ratio:>5.1f}x  {load}")
        rows.append({"row": key[0], "risk": key[1], "before": times["before"].get(key), "after": times["after"][key],
                     "ratio": ratio, "metric_before": metrics["before"].get(key), "metric_after": metrics["after"][key],
                     "load_before": loads["before"].get(key), "load_after": loads["after"][key]})  # fmt: skip
    total_b = sum(statistics.median(v) for k, v in times["before"].items() if k in times["after"])
    total_a = sum(statistics.median(v) for v in times["after"].values())
    print(f"total: before {total_b:.1f} s, after {total_a:.1f} s, ratio {total_b / total_a:.2f}x")
    summary = {"rev": args.rev, "paths": args.paths, "argv": extra, "cells": rows}
    summary.update(before_s=total_b, after_s=total_a)
    (OUT / "before_after.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
