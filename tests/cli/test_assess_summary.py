"""``amulet assess``'s console summary names how strong each risk column's attack was (the reports' wording),
and marks a weak budget in the column's header."""

from __future__ import annotations

import re
from typing import Any

import pytest
from results_testing import UTILITY, aggregate_chosen

from amulet.assess import AssessmentResults
from amulet.assess._display import strength_label
from amulet.cli._assess import _summary

SPEC: dict[str, Any] = {
    "name": "summary-strength",
    "dataset": {"name": "census"},
    "defenses": [{"name": "dp", "defense": "dp_sgd"}],
    "risks": [
        {"risk": "membership_inference", "attack": "lira", "params": {"num_shadow": 4}},
        {"risk": "evasion", "attack": "pgd", "params": {"epsilon": 0.1, "iterations": 10, "max_samples": 1000}},
        {"risk": "discriminatory_behavior", "attack": "subgroup_metrics"},
    ],
    "seeds": [0, 1, 2],
}


def _results() -> AssessmentResults:
    """The real plan of SPEC aggregated over chosen metrics: LiRA ran with a weak budget (4 shadow models), PGD
    with a sufficient one, and the subgroup metrics are a measurement without a budget."""

    def metrics(c: Any, noise: float) -> dict[str, float]:
        chosen: dict[str, float] = {"model.test_accuracy": 85.0 + noise, **UTILITY}
        if c.risk == "membership_inference":
            auc = (0.56 if c.row == "baseline" else 0.50) + noise
            chosen.update(auc=auc, tpr_at_fpr=0.01, balanced_acc=auc, n_candidates=5000.0)
        elif c.risk == "evasion":
            robust = (40.0 if c.row == "baseline" else 30.0) + noise
            chosen.update(robust_accuracy=robust, attack_success_rate=100.0 - robust)
        else:
            chosen.update(demographic_parity=0.1 + noise, equalized_odds=0.1 + noise, p_rule=80.0 + noise)
        return chosen

    return aggregate_chosen(SPEC, metrics)


def test_the_summary_shows_each_columns_attack_strength(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per strength: rich wraps at the terminal's width
    results = _results()
    lira, pgd, subgroups = results.columns
    assert lira.strength is not None and lira.strength.weak
    assert pgd.strength is not None and not pgd.strength.weak and subgroups.strength is None

    _summary(results, {"html": "report.html"})
    err = capsys.readouterr().err
    lines = err.splitlines()

    start = lines.index("attack strength (as run):")
    assert lines[start + 1 : start + 4] == [
        f"  {lira.label}: 4 shadow models (online; each record IN for 2, OUT for 2), 5,000 candidates; WEAK BUDGET",
        f"  {pgd.label}: 10 steps, L-inf epsilon 0.1, step size 0.025, up to 1,000 test rows",
        f"  {subgroups.label}: -",
    ]
    assert [line.strip() for line in lines[start + 1 : start + 4]] == [
        f"{c.label}: {strength_label(c)}" for c in results.columns
    ]  # the same one-line wording as the HTML report, the dashboard and the heatmap's hover text
    # Only the weak column's header says so (a header row of the table, not the weak_budget warning).
    headers = [line for line in lines if line.startswith("┃")]
    marked = [m.start() for line in headers for m in re.finditer("weak budget", line)]
    assert len(marked) == 1
    (header_with_label,) = [line for line in headers if "(lira)" in line]
    assert abs(header_with_label.index("(lira)") - marked[0]) < len(lira.label)  # under the LiRA column


def test_results_without_any_attack_budget_print_no_strength_section(capsys: pytest.CaptureFixture[str]) -> None:
    spec = {**SPEC, "risks": [SPEC["risks"][2]]}
    metrics = {"model.test_accuracy": 85.0, **UTILITY, "demographic_parity": 0.1, "equalized_odds": 0.1, "p_rule": 80.0}
    results = aggregate_chosen(spec, lambda c, noise: metrics)
    assert [c.strength for c in results.columns] == [None]
    _summary(results, {})
    err = capsys.readouterr().err
    assert "assessment COMPLETE" in err and "attack strength" not in err
