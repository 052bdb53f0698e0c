"""The words the dashboard shows for directions, verdicts and row statuses, and how it reads a results
document's numbers: shared by the heatmap (:mod:`dashboard.heatmap`), the results tables
(:mod:`dashboard.result_tables`) and the comparison of two runs (:mod:`dashboard.comparison`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["BASELINE", "DIRECTION_LABELS", "ROW_STATUS_LABELS", "VERDICT_LABELS", "number", "with_significance"]

#: The undefended row every other row is compared with.
BASELINE = "baseline"
DIRECTION_LABELS = {
    "more_susceptible": "▲ more susceptible",
    "less_susceptible": "▼ less susceptible",
    "no_significant_change": "= no significant change",
    "insufficient_data": "? too few seeds",
    "not_measured": "- not measured",
}
# Marks from plain Unicode blocks that every common font has (emoji need an emoji font).
VERDICT_LABELS = {"pass": "✔ pass", "fail": "✘ fail", "inconclusive": "⚠ inconclusive", "not_run": "○ not run"}
ROW_STATUS_LABELS = {"ok": "✔ ok", "degenerate": "⚠ degenerate", "failed": "✘ failed"}
_SIGNIFICANT = ("more_susceptible", "less_susceptible")


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else ``None``."""
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def with_significance(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell, with ``significant`` derived from its direction when results that predate it lack it."""
    if "significant" in cell:
        return dict(cell)
    return {**cell, "significant": cell.get("status", "ok") == "ok" and cell.get("direction") in _SIGNIFICANT}
