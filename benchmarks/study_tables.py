"""Markdown tables for docs/study-census.md from saved AssessmentResults JSON (``--save-results`` files).

    python -m benchmarks.study_tables matrix benchmarks/results/study/census_matrix_5seeds_results.json
    python -m benchmarks.study_tables sweep benchmarks/results/study/census_study_results.json
    python -m benchmarks.study_tables times benchmarks/results/study/census_matrix_5seeds_results.json

Every value is the mean over seeds with its t-based 95% interval; ``delta`` is the paired per-seed
difference to the baseline row (same seed, same member/adversary split) with its 95% interval. ``matrix``
also lists each attack's budget as run (``AssessmentResults.columns[].strength``; derived for files older than
results schema 1.3) and marks weak budgets; ``times`` sums the cells' wall time per column and per row.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from scipy import stats

from amulet.assess import AssessmentResults
from amulet.assess._display import strength_label

SWEEP_METRICS = [
    ("model.test_accuracy", "test acc. %"),
    ("fidelity", "fidelity %"),
    ("correct_fidelity", "correct fidelity %"),
    ("stolen_accuracy", "stolen acc. %"),
    ("balanced_accuracy_race", "AI bal. acc. race"),
    ("balanced_accuracy_sex", "AI bal. acc. sex"),
    ("auc_race", "AI AUC race"),
    ("auc_sex", "AI AUC sex"),
]


def _ci(values: list[float]) -> tuple[float, float, float, int]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(vals) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _fmt(mean: float, lo: float, hi: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(lo):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _values(results: dict[str, Any]) -> dict[tuple[str, str, str], dict[int, float]]:
    """(row, risk/attack, metric) -> seed -> value over ok cells."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for cell in results["cells"]:
        if cell["status"] != "ok":
            continue
        for metric, value in cell["metrics"].items():
            if value is not None:
                out[(cell["row"], f"{cell['risk']}/{cell['attack']}", metric)][cell["seed"]] = float(value)
    return out


def _delta(values: dict[int, float], base: dict[int, float]) -> tuple[float, float, float, int]:
    return _ci([values[s] - base[s] for s in values if s in base])


def sweep(results: dict[str, Any]) -> str:
    """One table per metric: rows = defense settings, value and paired delta to the baseline."""
    vals = _values(results)
    rows = [r["name"] for r in results["rows"]]
    lines = []
    for metric, label in SWEEP_METRICS:
        keys = [k for k in vals if k[2] == metric]
        if not keys:
            continue
        column = keys[0][1]
        digits = 3 if "AI" in label else 2
        lines.append(f"\n**{label}** (`{column}`, `{metric}`), n = seeds")
        lines.append("\n| row | mean [95% CI] | delta vs baseline [95% CI] | n |\n|---|---|---|---|")
        base = vals.get(("baseline", column, metric), {})
        for row in rows:
            v = vals.get((row, column, metric), {})
            m = _ci(list(v.values()))
            d = _delta(v, base) if row != "baseline" else (math.nan, math.nan, math.nan, 0)
            lines.append(f"| {row} | {_fmt(*m[:3], digits)} | {_fmt(*d[:3], digits)} | {m[3]} |")
    return "\n".join(lines)


def matrix(results: dict[str, Any]) -> str:
    """The interaction matrix: each cell the column's primary metric, mean [CI], and the delta's direction."""
    cols = results["columns"]
    rows = [r["name"] for r in results["rows"]]
    summaries = {(m["row"], m["risk"], m["attack"], m["metric"]): m for m in results["metrics"]}
    status = {(m["row"], m["column"]): m.get("status") for m in results["matrix"]}
    weak = {c["label"] for c in cols if (c.get("strength") or {}).get("weak")}
    header = (
        "| row | "
        + " | ".join(
            f"{c['risk_code']} {c['risk_name']}<br>`{c['primary_metric']}`"
            + (" (weak budget)" if c["label"] in weak else "")
            for c in cols
        )
        + " |"
    )
    lines = [header, "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        out = []
        for c in cols:
            m = summaries.get((row, c["risk"], c["attack"], c["primary_metric"]))
            if m is None or m.get("mean") is None:
                out.append("not run" if status.get((row, c["label"])) == "not_run" else "n/a")
                continue
            digits = 1 if abs(m["mean"]) >= 10 else 3
            nan = math.nan
            text = _fmt(m["mean"], m.get("ci_low") or nan, m.get("ci_high") or nan, digits)
            d = m.get("delta")
            if row != "baseline" and d and d.get("mean") is not None:
                lo, hi = d.get("ci_low"), d.get("ci_high")
                text += f"<br>Δ {_fmt(d['mean'], nan if lo is None else lo, nan if hi is None else hi, digits)}"
                if status.get((row, c["label"])) != "degenerate":
                    text += f"<br>{m.get('direction', '')}"
            if status.get((row, c["label"])) == "degenerate":
                # measured on (or against) a model at the majority rate: shown, never read as a finding
                text += "<br>**degenerate model: not a finding**"
            out.append(text)
        lines.append(f"| {row} | " + " | ".join(out) + " |")
    acc = {a["row"]: a for a in results.get("accuracy", [])}
    lines.append(
        "\nClean test accuracy (%): "
        + "; ".join(
            f"{r} {_fmt(acc[r]['mean'], acc[r]['ci_low'] or math.nan, acc[r]['ci_high'] or math.nan, 2)}"
            for r in rows
            if r in acc and acc[r].get("mean") is not None
        )
    )
    lines.append("\nAttack budgets (as run):")
    lines.extend(f"- {c['risk_code']} {c['label']}: {strength_label(c)}" for c in cols)
    return "\n".join(lines)


def times(results: dict[str, Any]) -> str:
    """Where the time went: the cells' wall time summed per column and per row (cached cells: the lookup)."""
    by_column: dict[str, float] = defaultdict(float)
    by_row: dict[str, float] = defaultdict(float)
    cached = 0
    for cell in results["cells"]:
        seconds = float(cell.get("seconds") or 0.0)
        by_column[f"{cell['risk']} ({cell['attack']})"] += seconds
        by_row[cell["row"]] += seconds
        cached += bool(cell.get("cached"))
    total = sum(by_column.values())
    lines = [f"cells: {len(results['cells'])} ({cached} reused from the cell cache); cell time {total:.1f} s"]
    lines.append("\n| column | seconds | share |\n|---|---|---|")
    lines.extend(
        f"| {name} | {sec:.1f} | {sec / total:.0%} |" for name, sec in sorted(by_column.items(), key=lambda kv: -kv[1])
    )
    lines.append("\n| row | seconds |\n|---|---|")
    lines.extend(f"| {name} | {sec:.1f} |" for name, sec in sorted(by_row.items(), key=lambda kv: -kv[1]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``matrix FILE``, ``sweep FILE`` or ``times FILE``: print the markdown."""
    argv = sys.argv[1:] if argv is None else argv
    kind, path = argv[0], Path(argv[1])
    # Read through the engine's model so that files before results schema 1.3 get their attack strength.
    results = json.loads(AssessmentResults.model_validate_json(path.read_text()).model_dump_json())
    print({"matrix": matrix, "sweep": sweep, "times": times}[kind](results))


if __name__ == "__main__":
    main()
