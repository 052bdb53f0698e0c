"""benchmarks/study_tables.py: the study's matrix table never reads a degenerate row's change as a finding."""

from __future__ import annotations

import json
from typing import Any

from results_testing import aggregate_chosen

from benchmarks import study_tables

SPEC: dict[str, Any] = {
    "name": "study-table",
    "dataset": {"name": "census"},
    "defenses": [{"name": "collapsed", "defense": "outlier_removal"}, {"name": "fine", "defense": "dp_sgd"}],
    "risks": [{"risk": "evasion", "attack": "pgd", "params": {"epsilon": 0.1, "iterations": 10}}],
    "seeds": [0, 1, 2],
}


def _results_json() -> dict[str, Any]:
    """SPEC's real plan, aggregated over chosen metrics: the 'collapsed' row's model predicts the majority class
    (accuracy at the majority rate, p = 1) on every seed; the other rows are well above it."""

    def metrics(c: Any, noise: float) -> dict[str, float]:
        collapsed = c.row == "collapsed"
        noise *= 100  # points of accuracy
        return {
            "model.test_accuracy": 76.0 if collapsed else 85.0 + noise,
            "model.majority_rate": 76.0,
            "model.top_class_share": 100.0 if collapsed else 70.0,
            "model.accuracy_p_value": 1.0 if collapsed else 1e-9,
            "robust_accuracy": (76.0 if collapsed else 30.0) + noise,
            "attack_success_rate": (24.0 if collapsed else 70.0) - noise,
        }

    return json.loads(aggregate_chosen(SPEC, metrics).model_dump_json())


def test_a_degenerate_row_is_shown_but_never_given_a_direction() -> None:
    results = _results_json()
    assert {m["row"]: m["status"] for m in results["matrix"]}["collapsed"] == "degenerate"
    table = study_tables.matrix(results)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    collapsed, fine = rows["collapsed"], rows["fine"]
    assert "degenerate model: not a finding" in collapsed
    assert not any(word in collapsed for word in ("less_susceptible", "more_susceptible", "no_significant_change"))
    assert "degenerate" not in fine and "more_susceptible" not in fine  # a real row keeps its direction
    assert any(word in fine for word in ("less_susceptible", "no_significant_change"))
