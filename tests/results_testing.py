"""Real results without training: an assessment spec's real plan, aggregated over metrics a test chooses per cell.

For tests of what is derived from results (reports, summaries, strength, study tables): the plan, the cells' keys
and the aggregation are the engine's own; only the measured numbers are given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amulet.assess import AssessmentResults, CellResult, aggregate_results, plan_assessment

#: A model well above the majority rate (76 %), for cells whose utility is not what the test is about.
UTILITY = {"model.majority_rate": 76.0, "model.top_class_share": 70.0, "model.accuracy_p_value": 1e-9}
#: A small per-seed offset (seeds 0, 1, 2), so that intervals over seeds are not degenerate.
NOISE = (-0.004, 0.001, 0.003)


def aggregate_chosen(spec: dict[str, Any], metrics: Callable[[Any, float], dict[str, float]]) -> AssessmentResults:
    """Aggregate ``spec``'s planned cells, each with ``metrics(cell, noise)`` (``noise``: the seed's offset)."""
    plan = plan_assessment(spec)
    cells = [
        CellResult(
            key=c.key,
            row=c.row,
            risk=c.risk,
            attack=c.attack,
            seed=c.seed,
            status="ok",
            metrics=metrics(c, NOISE[c.seed % len(NOISE)]),
        )
        for c in plan.cells
    ]
    return aggregate_results(plan, cells)
