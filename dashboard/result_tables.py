"""The tables of one assessment's results page, from an ``AssessmentResults`` JSON document: the warnings a
reader must see first, utility per row, the findings, the baseline's risk, the policy verdicts, and the
drill-down of one heatmap cell.

Every number is formatted by the engine's display convention (``amulet.assess``: ``format_value``,
``format_change``, ``format_interval``, ``cell_label``), the same as the HTML and PDF reports. Everything here
is pure (plain rows and dicts); the Results page draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amulet.assess import cell_label, format_change, format_interval, format_value
from amulet.assess._display import strength_label  # the engine's one wording, also in the HTML/PDF reports
from dashboard.labels import (
    BASELINE,
    DIRECTION_LABELS,
    ROW_STATUS_LABELS,
    VERDICT_LABELS,
    number,
    with_significance,
)

__all__ = [
    "MIN_SEEDS",
    "assessment_warnings",
    "attack_strength",
    "baseline_table",
    "cell_detail",
    "checks_table",
    "findings_table",
    "utility_table",
]

#: Fewer seeds than this give intervals too wide to read (the engine's "few_seeds" warning says the same).
MIN_SEEDS = 3


def _column(results: Mapping[str, Any], label: str) -> dict[str, Any]:
    for column in results.get("columns", []):
        if column.get("label") == label:
            return dict(column)
    raise KeyError(f"No column {label!r} in these results.")


def _accuracy(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(a.get("row")): dict(a) for a in results.get("accuracy", [])}


def cell_detail(results: Mapping[str, Any], row: str, column: str) -> dict[str, Any]:
    """Everything the drill-down of one cell shows.

    Returns:
        A dict with ``cell`` (the matrix cell), ``label`` (its ``cell_label``), ``column`` (risk/attack info
        with ``threat_model`` and ``params``), ``per_seed`` (list of ``{seed, metric, value, baseline,
        change}``), ``summaries`` (one per headline metric with mean, interval, change, its interval, p-value
        and direction), ``accuracy`` (the row's clean accuracy, its change against the baseline and the
        majority rate, formatted), ``degenerate`` (the reason when the row or the cell is degenerate, else
        ``""``), ``errors`` (reasons of cells that did not run) and ``strength`` (how strong the attack was:
        see :func:`attack_strength`).
    """
    info = _column(results, column)
    risk, attack = info.get("risk"), info.get("attack")
    cell = next((m for m in results.get("matrix", []) if m.get("row") == row and m.get("column") == column), None)
    summaries = []
    units: dict[str, str] = {}
    names: dict[str, str] = {}  # metric key -> its human name (the per-seed table shows names, not keys)
    for m in results.get("metrics", []):
        if m.get("row") == row and m.get("risk") == risk and m.get("attack") == attack and m.get("headline", True):
            delta = m.get("delta") or {}
            unit = str(m.get("unit") or "")
            units[str(m.get("metric"))] = unit
            names[str(m.get("metric"))] = str(m.get("name") or m.get("metric"))
            summaries.append(
                {
                    "metric": m.get("name") or m.get("metric"),
                    "key": m.get("metric"),
                    "higher is riskier": m.get("higher_is_riskier"),
                    "mean": format_value(m.get("mean"), unit),
                    "95% CI": format_interval(m.get("ci_low"), m.get("ci_high"), unit),
                    "change vs baseline": format_change(delta.get("mean"), unit),
                    "change 95% CI": format_interval(delta.get("ci_low"), delta.get("ci_high"), unit, change=True),
                    "p-value": number(delta.get("p_value")),
                    "direction": DIRECTION_LABELS.get(str(m.get("direction")), m.get("direction")),
                }
            )
    per_seed = []
    own = {
        c["seed"]: c
        for c in results.get("cells", [])
        if (c.get("row"), c.get("risk"), c.get("attack")) == (row, risk, attack)
    }
    base = {
        c["seed"]: c
        for c in results.get("cells", [])
        if (c.get("row"), c.get("risk"), c.get("attack")) == (BASELINE, risk, attack)
    }
    errors = []
    for seed in sorted(own):
        c = own[seed]
        if c.get("status") != "ok":
            errors.append({"seed": seed, "status": c.get("status"), "reason": c.get("reason", "")})
        for key, unit in units.items():
            value = number((c.get("metrics") or {}).get(key))
            baseline = number((base.get(seed, {}).get("metrics") or {}).get(key))
            per_seed.append(
                {
                    "seed": seed,
                    "metric": names.get(key, key.replace("_", " ")),
                    "value": format_value(value, unit),
                    "baseline": format_value(baseline, unit),
                    "change": format_change(None if value is None or baseline is None else value - baseline, unit),
                }
            )
    accuracy = _accuracy(results)
    own_acc, base_acc = accuracy.get(row, {}), accuracy.get(BASELINE, {})
    delta = own_acc.get("delta") or {}
    degenerate = ""
    if cell and cell.get("status") == "degenerate":
        degenerate = str(cell.get("reason") or "the model is degenerate")
    elif own_acc.get("status") == "degenerate":
        degenerate = str(own_acc.get("reason") or "the model is degenerate")
    return {
        "cell": cell,
        "label": cell_label(cell) if cell else "n/a",
        "column": info,
        "per_seed": per_seed,
        "summaries": summaries,
        "accuracy": {
            "accuracy": format_value(own_acc.get("mean"), "%"),
            "accuracy 95% CI": format_interval(own_acc.get("ci_low"), own_acc.get("ci_high"), "%"),
            "baseline accuracy": format_value(base_acc.get("mean"), "%"),
            "change vs baseline": format_change(delta.get("mean"), "%"),
            "change 95% CI": format_interval(delta.get("ci_low"), delta.get("ci_high"), "%", change=True),
            "majority rate": format_value(own_acc.get("majority_rate", base_acc.get("majority_rate")), "%"),
        },
        "degenerate": degenerate,
        "errors": errors,
        "strength": attack_strength(info, cell, [own[seed] for seed in sorted(own)]),
    }


def attack_strength(
    column: Mapping[str, Any], cell: Mapping[str, Any] | None, seed_cells: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """How strong the attack behind one heatmap cell was (results schema 1.3 and later).

    The budget is the one this row's own runs recorded (each seed's ``strength``), else the column's. A budget
    is weak when it says so, or when the matrix cell carries ``weak_budget`` (the engine then keeps it out of
    the findings).

    Returns:
        ``label`` (the engine's one-line ``strength_label``: ``"-"`` when the attack has no budget, ending in
        ``"; WEAK BUDGET"`` when weak), ``weak``, ``note`` (why a weak budget cannot resolve small effects, and
        what to raise) and ``budget`` (item -> value as run).
    """
    strength = next((c["strength"] for c in seed_cells if isinstance(c.get("strength"), Mapping)), None)
    source: Mapping[str, Any] = {"strength": strength} if strength is not None else column
    raw = source.get("strength")
    found: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    weak = bool(found.get("weak")) or bool((cell or {}).get("weak_budget"))
    label = strength_label(source)
    if weak and not label.endswith("WEAK BUDGET"):
        label += "; WEAK BUDGET"
    note = str(found.get("note") or "")
    raise_to = found.get("raise_to") or {}
    if weak and raise_to:
        note = (note + " " if note else "") + "Raise " + ", ".join(f"{k} to {v}" for k, v in raise_to.items()) + "."
    return {"label": label, "weak": weak, "note": note, "budget": dict(found.get("budget") or {})}


def utility_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Utility first: per row, clean accuracy with its interval, its change against the baseline, the test
    set's majority-class rate, the top-class share of the predictions, the privacy budget of DP rows, and the
    row's status (ok, degenerate, failed) with the reason. The baseline comes first."""
    out = []
    rows = [r.get("name") for r in results.get("rows", [])]
    accuracy = _accuracy(results)
    order = [r for r in rows if r in accuracy] + [r for r in accuracy if r not in rows]
    order.sort(key=lambda r: r != BASELINE)
    for name in order:
        a = accuracy[name]
        delta = a.get("delta") or {}
        props = a.get("properties") or {}
        epsilon, delta_dp = number(props.get("privacy_epsilon")), number(props.get("privacy_delta"))
        status = str(a.get("status") or "ok")
        out.append(
            {
                "row": name,
                "status": ROW_STATUS_LABELS.get(status, status),
                "clean accuracy": format_value(a.get("mean"), "%"),
                "95% CI": format_interval(a.get("ci_low"), a.get("ci_high"), "%"),
                "change vs baseline": "" if name == BASELINE else format_change(delta.get("mean"), "%"),
                "change 95% CI": ""
                if name == BASELINE
                else format_interval(delta.get("ci_low"), delta.get("ci_high"), "%", change=True),
                "majority rate": format_value(a.get("majority_rate"), "%"),
                "top-class share": format_value(a.get("top_class_share"), "%"),
                "epsilon": "" if epsilon is None else f"{epsilon:.2f}",
                "delta (DP)": "" if delta_dp is None else f"{delta_dp:.1e}",
                "reason": str(a.get("reason") or ""),
            }
        )
    return out


def assessment_warnings(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before trusting the numbers, for the top of the page: ``{"level", "message"}``.

    The results' status (partial: some cells errored; failed: nothing trustworthy was measured), every
    assessment-level warning the engine recorded (few seeds, degenerate or failed baseline, degenerate rows,
    cell errors), and a few-seeds warning for results that predate it.
    """
    out: list[dict[str, str]] = []
    status = results.get("status")
    counts = results.get("counts") or {}
    if status == "failed":
        out.append(
            {
                "level": "error",
                "message": "This assessment FAILED: the baseline could not be measured or no cell could be "
                "measured. No number below is a finding.",
            }
        )
    elif status == "partial":
        out.append(
            {
                "level": "warning",
                "message": f"This assessment is PARTIAL: {counts.get('cells_error', 'some')} cell(s) errored; "
                "their columns are grey and their checks could not pass.",
            }
        )
    codes = set()
    for warning in results.get("warnings") or []:
        codes.add(warning.get("code"))
        prefix = f"{warning['row']}: " if warning.get("row") and warning["row"] not in str(warning["message"]) else ""
        level = "error" if warning.get("code") in ("baseline_degenerate", "baseline_failed") else "warning"
        out.append({"level": level, "message": prefix + str(warning.get("message", ""))})
    seeds = len(results.get("seeds") or [])
    if "few_seeds" not in codes and 0 < seeds < MIN_SEEDS:
        out.append(
            {
                "level": "warning",
                "message": f"Only {seeds} seed(s): intervals are too wide to support a finding; use at least "
                f"{MIN_SEEDS} seeds.",
            }
        )
    return out


def findings_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings: significant, non-degenerate, ok cells, largest change in susceptibility first (the
    engine's ``findings``; recomputed the same way for results that predate it)."""
    findings = results.get("findings")
    if findings is None:
        matrix = [with_significance(m) for m in results.get("matrix", [])]
        findings = [m for m in matrix if m.get("status", "ok") == "ok" and m["significant"]]
        findings.sort(key=lambda m: -abs(number(m.get("susceptibility_change")) or 0.0))
    return [
        {
            "row": m.get("row"),
            "column": m.get("column"),
            "metric": m.get("metric"),
            "change": cell_label(m),
            "change 95% CI": format_interval(
                m.get("delta_ci_low"), m.get("delta_ci_high"), str(m.get("unit") or ""), change=True
            ),
            "direction": DIRECTION_LABELS.get(str(m.get("direction")), m.get("direction")),
            "intended": bool(m.get("intended")),
        }
        for m in findings
        if m.get("status", "ok") == "ok"
    ]


def baseline_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The undefended model's headline metrics: one row per (risk, attack, metric)."""
    return [
        {
            "risk": m.get("risk"),
            "attack": m.get("attack"),
            "metric": m.get("name") or m.get("metric"),
            "mean": format_value(m.get("mean"), str(m.get("unit") or "")),
            "95% CI": format_interval(m.get("ci_low"), m.get("ci_high"), str(m.get("unit") or "")),
            "higher is riskier": m.get("higher_is_riskier"),
            "seeds": m.get("n"),
        }
        for m in results.get("metrics", [])
        if m.get("row") == BASELINE and m.get("headline", True)
    ]


def checks_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy verdicts: one row per check and matching row (an inconclusive one says why)."""
    return [
        {
            "verdict": VERDICT_LABELS.get(str(c.get("status")), c.get("status")),
            "check": f"{c.get('metric')} {c.get('op')} {c.get('threshold')}"
            + (" (delta)" if c.get("on") == "delta" else ""),
            "row": c.get("row"),
            "value": format_change(c.get("value"), str(c.get("unit") or ""))
            if c.get("on") == "delta"
            else format_value(c.get("value"), str(c.get("unit") or "")),
            "95% CI": format_interval(
                c.get("ci_low"), c.get("ci_high"), str(c.get("unit") or ""), change=c.get("on") == "delta"
            ),
            "message": c.get("message", ""),
        }
        for c in results.get("checks", [])
    ]
