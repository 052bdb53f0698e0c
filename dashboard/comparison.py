"""Two assessments side by side, from their ``AssessmentResults`` JSON documents: each shared cell's change in
both runs, B's change minus A's with a Welch interval, and the policy verdicts that differ. Pure (plain rows);
the Compare page draws them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy import stats

from amulet.assess import cell_label, format_change, format_interval
from dashboard.heatmap import matrix_grid
from dashboard.labels import DIRECTION_LABELS, VERDICT_LABELS, number

__all__ = ["changed_verdicts", "compare_grids", "difference_of_changes"]


def _delta_of(results: Mapping[str, Any], cell: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``delta`` summary (mean, se, n over seeds) of a matrix cell's metric."""
    for metric in results.get("metrics", []):
        if (metric.get("row"), metric.get("risk"), metric.get("attack"), metric.get("metric")) == (
            cell.get("row"),
            cell.get("risk"),
            cell.get("attack"),
            cell.get("metric"),
        ):
            return metric.get("delta") or None
    # Results without per-metric summaries: the cell's own change, with no spread to test it against.
    return {"mean": cell.get("delta"), "se": None, "n": 1} if cell.get("delta") is not None else None


def difference_of_changes(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None
) -> tuple[float, float | None, float | None, float | None] | None:
    """B's change minus A's with a Welch 95% interval and two-sided p-value (the runs are independent).

    ``a`` and ``b`` are ``delta`` summaries (``mean``, ``se``, ``n`` over seeds). Returns
    ``(difference, ci_low, ci_high, p_value)``; the interval and p-value are ``None`` when either run has
    fewer than two seeds (no standard error), and the whole is ``None`` when either change is unmeasured.
    """
    if not a or not b:
        return None
    ma, mb = number(a.get("mean")), number(b.get("mean"))
    if ma is None or mb is None:
        return None
    diff = mb - ma
    sa, sb = number(a.get("se")), number(b.get("se"))
    na, nb = int(a.get("n") or 0), int(b.get("n") or 0)
    if sa is None or sb is None or na < 2 or nb < 2:
        return diff, None, None, None
    se = math.hypot(sa, sb)
    if se == 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    df = (sa**2 + sb**2) ** 2 / (sa**4 / (na - 1) + sb**4 / (nb - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - half, diff + half, p


def compare_grids(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cells present in both results: each one's change (``cell_label``), and B's change minus A's in the
    metric's unit with its Welch 95% interval and whether it is significant (5%). The difference is blank
    unless both cells are ok and in the same unit."""
    a, b = matrix_grid(first), matrix_grid(second)
    out = []
    for row in a.rows:
        for column in a.columns:
            if row not in b.rows or column not in b.columns:
                continue
            ca, cb = a.cell(row, column), b.cell(row, column)
            ok = bool(ca and cb and ca.get("status", "ok") == "ok" and cb.get("status", "ok") == "ok")
            unit = str((ca or {}).get("unit") or "")
            same = (
                ok
                and unit == str((cb or {}).get("unit") or "")
                and (ca or {}).get("metric") == (cb or {}).get("metric")
            )
            diff = difference_of_changes(_delta_of(first, ca), _delta_of(second, cb)) if same and ca and cb else None
            significance = ""
            if diff is not None:
                significance = "untested: under 2 seeds" if diff[3] is None else ("yes" if diff[3] < 0.05 else "no")
            out.append(
                {
                    "row": row,
                    "column": column,
                    "A: change": cell_label(ca) if ca else "not measured",
                    "B: change": cell_label(cb) if cb else "not measured",
                    "B - A": format_change(diff[0], unit) if diff else "",
                    "95% CI of B - A": format_interval(diff[1], diff[2], unit, change=True)
                    if diff and diff[1] is not None
                    else "",
                    "significant": significance,
                    "A: direction": DIRECTION_LABELS.get(str(ca.get("direction")) if ca else "not_measured"),
                    "B: direction": DIRECTION_LABELS.get(str(cb.get("direction")) if cb else "not_measured"),
                }
            )
    return out


def changed_verdicts(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Policy checks (matched by id and row) whose verdict differs between A and B, or that only one has."""

    def by_key(results: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
        return {(str(c.get("id")), str(c.get("row"))): c for c in results.get("checks", [])}

    a, b = by_key(first), by_key(second)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, {}).get("status"), b.get(key, {}).get("status")
        if va == vb:
            continue
        out.append(
            {
                "check": key[0],
                "row": key[1],
                "A": VERDICT_LABELS.get(str(va), "not in A") if va else "not in A",
                "B": VERDICT_LABELS.get(str(vb), "not in B") if vb else "not in B",
            }
        )
    return out
