"""Results: statistics over seeds, deltas, directions (sign conventions), policy verdicts and exit codes.

These tests feed hand-made cell values for a real plan (real registry metadata) into ``aggregate_results``,
so every number they assert is known exactly.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats

from amulet.assess import CellResult, aggregate_results, load_spec, plan_assessment
from amulet.assess._results import RESULTS_SCHEMA_VERSION
from amulet.assess._stats import paired_difference, summarize

from .conftest import tiny_spec

SEEDS = [0, 1, 2]


def _plan(policy=(), risks=None, seeds=SEEDS):
    spec = tiny_spec(
        seeds=seeds,
        defenses=[{"defense": "adversarial_training"}, {"defense": "outlier_removal"}],
        risks=risks or [{"risk": "evasion"}, {"risk": "discriminatory_behavior"}],
        policy=list(policy),
    )
    return plan_assessment(load_spec(spec))


def _cells(plan, values):
    """values: {(row, risk): {metric: [per-seed values]}}; other cells get 'not_run'."""
    out = []
    for cell in plan.cells:
        given = values.get((cell.row, cell.risk))
        if given is None:
            out.append(CellResult(key=cell.key, row=cell.row, risk=cell.risk, attack=cell.attack, seed=cell.seed,
                                  status="not_run", reason="not applicable in this test"))  # fmt: skip
            continue
        i = plan.spec.seeds.index(cell.seed)
        metrics = {k: v[i] for k, v in given.items()}
        out.append(CellResult(key=cell.key, row=cell.row, risk=cell.risk, attack=cell.attack, seed=cell.seed,
                              status="ok", metrics=metrics, seconds=0.5))  # fmt: skip
    return out


def test_summary_matches_scipy():
    values = [0.61, 0.58, 0.66, 0.63]
    s = summarize(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert s.mean == pytest.approx(sum(values) / 4)
    assert s.se == pytest.approx(stats.sem(values))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert summarize([0.5]).ci_low is None
    assert summarize([math.nan, 1.0]).n == 1
    same = summarize([0.02, 0.02, 0.02])
    assert (same.mean, same.ci_low, same.ci_high, same.se) == (0.02, 0.02, 0.02, 0.0)


def test_paired_difference_is_a_paired_t_test():
    a, b = [0.9, 0.82, 0.87, 0.91], [0.5, 0.47, 0.52, 0.49]
    d = paired_difference(a, b)
    assert d.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert d.mean == pytest.approx(sum(x - y for x, y in zip(a, b)) / 4)
    assert paired_difference([1, 1, 1], [1, 1, 1]).p_value == 1.0
    assert paired_difference([2, 2, 2], [1, 1, 1]).p_value == 0.0


def test_lower_is_riskier_metric_lowered_by_a_defense_is_more_susceptible():
    # robust_accuracy: higher = LESS susceptible. A defense that LOWERS it makes the model MORE susceptible;
    # demographic parity: higher = MORE discriminatory. A defense that lowers it is LESS susceptible.
    plan = _plan()
    values = {
        ("baseline", "evasion"): {"robust_accuracy": [60.0, 62.0, 61.0], "attack_success_rate": [30.0, 29.0, 31.0]},
        ("outlier_removal", "evasion"): {"robust_accuracy": [40.0, 41.0, 39.5], "attack_success_rate": [50, 52, 51]},
        ("adversarial_training", "evasion"): {"robust_accuracy": [75.0, 77.0, 76.0], "attack_success_rate": [9, 8, 9]},
        ("baseline", "discriminatory_behavior"): {"demographic_parity": [0.20, 0.21, 0.19], "equalized_odds": [0.3] * 3,
                                                  "p_rule": [40.0, 42.0, 41.0]},
        ("outlier_removal", "discriminatory_behavior"): {"demographic_parity": [0.05, 0.06, 0.04],
                                                         "equalized_odds": [0.3] * 3, "p_rule": [30.0, 29.0, 31.0]},
    }  # fmt: skip
    results = aggregate_results(plan, _cells(plan, values))
    worse = results.metric("outlier_removal", "evasion", "robust_accuracy")
    assert worse.delta.mean < 0
    assert worse.direction == "more_susceptible"
    assert worse.susceptibility_change > 0
    assert not worse.intended
    better = results.metric("adversarial_training", "evasion", "robust_accuracy")
    assert better.direction == "less_susceptible" and better.intended
    asr = results.metric("outlier_removal", "evasion", "attack_success_rate")
    assert asr.direction == "more_susceptible"  # higher is riskier, and it went up
    dp = results.metric("outlier_removal", "discriminatory_behavior", "demographic_parity")
    assert dp.direction == "less_susceptible"
    p_rule = results.metric("outlier_removal", "discriminatory_behavior", "p_rule")
    assert p_rule.direction == "more_susceptible"  # p%-rule: lower = more discriminatory
    same = results.metric("outlier_removal", "discriminatory_behavior", "equalized_odds")
    assert same.direction == "no_significant_change"
    # The heatmap (primary metric) agrees, in fraction units: -20.8 points of robust accuracy -> +0.208.
    cell = next(m for m in results.matrix if m.row == "outlier_removal" and m.risk == "evasion")
    assert cell.susceptibility_change == pytest.approx(-worse.delta.mean / 100)
    assert cell.direction == "more_susceptible"
    from amulet.assess import cell_colour

    red = cell_colour(cell)
    assert int(red[1:3], 16) > int(red[5:7], 16)  # more red than blue


@pytest.mark.parametrize(
    ("op", "expected"),
    [("<=", "pass"), ("<", "fail"), (">=", "pass"), (">", "fail")],
)
def test_threshold_exactly_at_the_measured_value(op: str, expected: str):
    # Identical values over seeds: a zero-width interval at exactly the threshold. Documented behaviour:
    # <= and >= include the threshold (pass), < and > exclude it (fail).
    plan = _plan(policy=[{"metric": "evasion.attack_success_rate", "op": op, "threshold": 0.02, "row": "baseline"}])
    values = {("baseline", "evasion"): {"robust_accuracy": [50.0] * 3, "attack_success_rate": [0.02] * 3}}
    results = aggregate_results(plan, _cells(plan, values))
    (check,) = results.checks
    assert check.value == 0.02 and check.ci_low == 0.02 and check.ci_high == 0.02
    assert check.status == expected


@pytest.mark.parametrize("op", ["<=", "<", ">=", ">"])
def test_an_interval_straddling_the_threshold_is_inconclusive(op: str):
    plan = _plan(policy=[{"metric": "evasion.attack_success_rate", "op": op, "threshold": 0.02, "row": "baseline"}])
    values = {("baseline", "evasion"): {"robust_accuracy": [50.0] * 3, "attack_success_rate": [0.01, 0.02, 0.03]}}
    results = aggregate_results(plan, _cells(plan, values))
    (check,) = results.checks
    assert check.value == pytest.approx(0.02)
    assert check.ci_low < 0.02 < check.ci_high
    assert check.status == "inconclusive"
    assert "straddles" in check.message
    assert results.exit_code == 1


def test_verdicts_on_values_deltas_single_seeds_and_not_run_cells():
    policy = [
        {"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 50, "id": "robust"},
        {"metric": "evasion.robust_accuracy", "op": ">=", "threshold": -5, "delta": True, "id": "no-worse"},
        {"metric": "discriminatory_behavior.p_rule", "op": ">=", "threshold": 80, "row": "baseline", "id": "fair"},
    ]
    plan = _plan(policy=policy)
    values = {
        ("baseline", "evasion"): {"robust_accuracy": [60.0, 62.0, 61.0], "attack_success_rate": [1.0] * 3},
        ("outlier_removal", "evasion"): {"robust_accuracy": [40.0, 41.0, 39.5], "attack_success_rate": [1.0] * 3},
        ("adversarial_training", "evasion"): {"robust_accuracy": [75.0, 77.0, 76.0], "attack_success_rate": [1.0] * 3},
    }
    results = aggregate_results(plan, _cells(plan, values))
    status = {c.id: c.status for c in results.checks}
    assert status["robust:baseline"] == "pass"
    assert status["robust:outlier_removal"] == "fail"
    assert status["robust:adversarial_training"] == "pass"
    assert status["no-worse:outlier_removal"] == "fail"
    assert status["no-worse:adversarial_training"] == "pass"
    assert "no-worse:baseline" not in status  # a delta check never applies to the baseline
    assert status["fair:baseline"] == "not_run"
    fair = next(c for c in results.checks if c.id == "fair:baseline")
    assert "not applicable in this test" in fair.message
    assert results.exit_code == 1
    assert any("EU AI Act" in c for c in ["EU AI Act"]) and "EUAIA-15" in results.checks[0].clauses
    assert "NIST-MEASURE-2.11" in fair.clauses

    one_seed = _plan(policy=policy[:1], seeds=[0])
    res1 = aggregate_results(
        one_seed, _cells(one_seed, {k: {m: v[:1] for m, v in d.items()} for k, d in values.items()})
    )
    assert {c.status for c in res1.checks if c.row == "baseline"} == {"pass"}
    assert res1.metric("outlier_removal", "evasion", "robust_accuracy").direction == "insufficient_data"


def test_exit_codes_and_nan_means_not_measured():
    policy = [{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 10, "row": "baseline"}]
    plan = _plan(policy=policy)
    ok = {("baseline", "evasion"): {"robust_accuracy": [60.0, math.nan, 62.0], "attack_success_rate": [1.0] * 3}}
    results = aggregate_results(plan, _cells(plan, ok))
    m = results.metric("baseline", "evasion", "robust_accuracy")
    assert m.n == 2 and m.values == {0: 60.0, 2: 62.0}
    assert results.exit_code == 0
    # A cell that errors -> 2 (when no check fails).
    cells = _cells(plan, ok)
    cells[-1] = cells[-1].model_copy(update={"status": "error", "reason": "RuntimeError: x", "metrics": {}})
    assert aggregate_results(plan, cells).exit_code == 2
    # A check that cannot run -> 3.
    nan = {("baseline", "evasion"): {"robust_accuracy": [math.nan] * 3, "attack_success_rate": [1.0] * 3}}
    results = aggregate_results(plan, _cells(plan, nan))
    assert results.checks[0].status == "not_run"
    assert results.exit_code == 3
    # Missing results count as errors.
    assert aggregate_results(plan, []).counts["cells_error"] == len(plan.cells)


def test_results_json_round_trips_and_matches_its_schema():
    plan = _plan(policy=[{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 10}])
    values = {("baseline", "evasion"): {"robust_accuracy": [60.0, math.nan, 62.0], "attack_success_rate": [1.0] * 3}}
    results = aggregate_results(plan, _cells(plan, values))
    from amulet.assess import AssessmentResults, results_json_schema
    from amulet.assess._report import render_json

    text = render_json(results)
    assert "NaN" not in text
    import json

    data = json.loads(text)
    assert data["schema_version"] == RESULTS_SCHEMA_VERSION == "1.3" and data["exit_code"] == results.exit_code
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, results_json_schema())
    again = AssessmentResults.model_validate(data)  # the file as written reads back (derived fields ignored)
    assert again.exit_code == results.exit_code
    assert again.metric("baseline", "evasion", "robust_accuracy").mean == 61.0
    assert math.isnan(next(c for c in again.cells if c.row == "baseline" and c.seed == 1 and c.risk == "evasion")
                      .metrics["robust_accuracy"])  # fmt: skip
