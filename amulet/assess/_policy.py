"""Policy verdicts: each check of the spec's ``policy`` evaluated on the interval of what it names.

Verdicts use the 95% interval: ``pass`` if it lies entirely on the allowed side, ``fail`` if entirely on the
other, ``inconclusive`` if it straddles the threshold, ``not_run`` if nothing was measured. ``<=``/``>=``
include the threshold, ``<``/``>`` exclude it. With one seed the interval is the value itself. A check on a
degenerate model (or a change against a degenerate baseline) is ``inconclusive``, never ``pass``
(:func:`distrust_degenerate`).
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from amulet.assess._compliance import clauses_for
from amulet.assess._display import format_change, format_value
from amulet.assess._plan import AssessmentPlan
from amulet.assess._schema import AccuracySummary, CellResult, CheckResult, ColumnInfo, MetricSummary
from amulet.assess._spec import BASELINE

__all__ = ["distrust_degenerate", "evaluate_policy", "verdict"]


def verdict(op: str, threshold: float, low: float, high: float) -> Literal["pass", "fail", "inconclusive"]:
    """``pass`` when every value of [low, high] satisfies ``x op threshold``, ``fail`` when none does."""
    if op == "<=":
        ok_all, ok_none = high <= threshold, low > threshold
    elif op == "<":
        ok_all, ok_none = high < threshold, low >= threshold
    elif op == ">=":
        ok_all, ok_none = low >= threshold, high < threshold
    else:  # ">"
        ok_all, ok_none = low > threshold, high <= threshold
    return "pass" if ok_all else "fail" if ok_none else "inconclusive"


def distrust_degenerate(check: CheckResult, row: AccuracySummary, baseline: AccuracySummary) -> CheckResult:
    """A check on a degenerate model (or a change against a degenerate baseline) is inconclusive, never pass."""
    if row.status == "degenerate":
        why = f"row {row.row!r} has a {row.reason}"
    elif check.on == "delta" and baseline.status == "degenerate":
        why = f"the baseline it is compared with has a {baseline.reason}"
    else:
        return check
    measured = check.message if check.status != "not_run" else ""
    return check.model_copy(
        update={
            "status": "inconclusive",
            "message": f"Inconclusive: {why}; a verdict on a degenerate model means nothing. "
            + (f"(As measured: {measured})" if measured else ""),
        }
    )


def _fmt(value: float | None, unit: str, change: bool = False) -> str:
    return format_change(value, unit) if change else format_value(value, unit)


def evaluate_policy(
    plan: AssessmentPlan,
    lookup: dict[tuple[str, str, str, str], MetricSummary],
    cells: list[CellResult],
    columns: list[ColumnInfo],
) -> list[CheckResult]:
    """One :class:`CheckResult` per (check, matching row, matching attack) of ``plan.spec.policy``."""
    row_names = [r.name for r in plan.rows]
    category = {c.risk: c.category for c in columns}
    out: list[CheckResult] = []
    for index, check in enumerate(plan.spec.policy):
        risk, _, metric = check.metric.partition(".")
        rows = row_names if check.row == "*" else fnmatch.filter(row_names, check.row)
        if check.delta:
            rows = [r for r in rows if r != BASELINE]
        attacks = [
            c.attack for c in plan.columns if c.risk == risk and (check.attack is None or c.attack == check.attack)
        ]
        clause_ids = [c.id for c in clauses_for(risk, category.get(risk, ""))]
        base_id = check.id or f"policy[{index}]:{check.metric}{check.op}{check.threshold:g}" + (
            ":delta" if check.delta else ""
        )
        for row in rows:
            for attack in attacks:
                m = lookup[(row, risk, attack, metric)]
                stats = m.delta if check.delta else m
                n = stats.n if stats is not None else 0
                value = stats.mean if stats is not None else None
                low = stats.ci_low if stats is not None else None
                high = stats.ci_high if stats is not None else None
                check_id = f"{base_id}:{row}" + (f":{attack}" if len(attacks) > 1 else "")
                what = ("change vs baseline of " if check.delta else "") + check.metric
                common: dict[str, Any] = {
                    "id": check_id,
                    "metric": check.metric,
                    "risk": risk,
                    "attack": attack,
                    "row": row,
                    "op": check.op,
                    "threshold": check.threshold,
                    "on": "delta" if check.delta else "value",
                    "unit": m.unit,
                    "intended": m.intended,
                    "clauses": clause_ids,
                }
                if n == 0 or value is None:
                    reasons = sorted(
                        {
                            c.reason
                            for c in cells
                            if (c.row, c.risk, c.attack) == (row, risk, attack) and c.status != "ok" and c.reason
                        }
                    )
                    out.append(
                        CheckResult(
                            **common,
                            status="not_run",
                            n=0,
                            message=f"{what} was not measured for {row!r}"
                            + (": " + "; ".join(reasons) if reasons else " (no finite value from any seed)."),
                        )
                    )
                    continue
                if low is None or high is None:  # one seed: the interval is the value itself
                    low = high = value
                status = verdict(check.op, check.threshold, low, high)
                d = bool(check.delta)
                interval = f"[{_fmt(low, m.unit, d)}, {_fmt(high, m.unit, d)}]"
                threshold = f"{check.op} {_fmt(check.threshold, m.unit, d)}"
                if status == "inconclusive":
                    message = (
                        f"{what} = {_fmt(value, m.unit, d)}, 95% CI {interval} straddles the threshold "
                        f"{threshold} over {n} seeds; add seeds to decide."
                    )
                else:
                    word = "satisfies" if status == "pass" else "violates"
                    message = (
                        f"{what} = {_fmt(value, m.unit, d)}, 95% CI {interval} over {n} seed{'s' if n > 1 else ''} "
                        f"{word} {threshold}."
                    )
                out.append(
                    CheckResult(**common, status=status, value=value, ci_low=low, ci_high=high, n=n, message=message)
                )
    return out
