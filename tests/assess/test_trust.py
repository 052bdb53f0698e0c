"""Trustworthy verdicts: degenerate models are caught, errors never end "complete", intervals stay in range,
and every view uses one display convention.

Real census data (tiny subsamples, few epochs); the hand-made aggregation tests use a real plan and the real
registry metadata so that every asserted number is known exactly.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from amulet.assess import (
    SATURATION,
    AssessmentResults,
    CellResult,
    aggregate_results,
    cell_colour,
    cell_label,
    format_change,
    format_value,
    load_spec,
    plan_assessment,
    render_reports,
    run_assessment,
)
from amulet.assess._display import GREY, NEUTRAL
from amulet.assess._heatmap import heatmap_svg
from amulet.cli import app

from .conftest import tiny_spec

FAIRNESS = [{"risk": "discriminatory_behavior", "attack": "subgroup_metrics"}]


def _arch_and_bundle(spec: dict):
    from amulet.assess._data import architecture_spec, load_bundle

    loaded = load_spec(spec)
    bundle = load_bundle(loaded.dataset)
    return architecture_spec(loaded.model, bundle), bundle


# --- Degenerate models ---------------------------------------------------------------------------------------------


def test_a_dp_sgd_row_with_a_huge_noise_multiplier_is_degenerate_and_its_checks_inconclusive(tmp_path: Path):
    # Noise 1000x the clipping norm drowns every gradient: the "defended" model is noise. Before this check it
    # was reported as a finding and PASSed its fairness check (a constant model has no parity gap).
    spec = tiny_spec(
        defenses=[{"defense": "dp_sgd", "params": {"noise_multiplier": 1000.0}}],
        risks=FAIRNESS,
        policy=[{"metric": "discriminatory_behavior.demographic_parity", "op": "<=", "threshold": 1.0, "id": "dp"}],
    )
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    rows = {a.row: a for a in results.accuracy}
    assert rows["baseline"].status == "ok", rows["baseline"].reason
    noisy = rows["dp_sgd"]
    assert noisy.status == "degenerate" and "degenerate model" in noisy.reason
    assert noisy.degenerate_seeds == [0, 1]
    assert noisy.majority_rate == pytest.approx(rows["baseline"].majority_rate)  # the same test rows
    (cell,) = [m for m in results.matrix if m.row == "dp_sgd"]
    assert cell.status == "degenerate" and "degenerate" in cell.reason and not cell.significant
    assert cell not in results.findings
    assert cell_colour(cell) == GREY and cell_label(cell) == "degenerate"
    checks = {c.row: c for c in results.checks}
    assert checks["baseline"].status == "pass"  # a useful model's verdict is untouched
    assert checks["dp_sgd"].status == "inconclusive"  # the constant model would have passed (gap <= 1 always)
    assert "degenerate" in checks["dp_sgd"].message
    assert [w.code for w in results.warnings if w.row == "dp_sgd"] == ["row_degenerate"]
    assert results.exit_code == 1
    # Every cell carries its model's utility figures (contract keys).
    for c in results.cells:
        for key in ("model.test_accuracy", "model.majority_rate", "model.top_class_share", "model.accuracy_p_value"):
            assert math.isfinite(c.metrics[key]), key
    # Two seeds: a visible warning, and every % interval stays in [0, 100] (accuracy included).
    assert "few_seeds" in [w.code for w in results.warnings]
    for a in results.accuracy:
        assert 0 <= a.ci_low <= a.mean <= a.ci_high <= 100


def test_an_untrained_uploaded_baseline_makes_the_assessment_warn_at_the_top(tmp_path: Path):
    from amulet.assess._data import make_model_factory
    from amulet.io import save_model

    spec = tiny_spec(
        defenses=[{"defense": "outlier_removal"}],
        risks=FAIRNESS,
        policy=[{"metric": "discriminatory_behavior.demographic_parity", "op": "<=", "threshold": 1.0, "delta": True}],
    )
    arch, _ = _arch_and_bundle(spec)
    torch.manual_seed(0)
    untrained = make_model_factory(arch)()  # random initial weights, never trained
    _, weights = save_model(untrained, tmp_path / "upload", arch)
    spec["model"]["weights"] = str(weights)
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    base = next(a for a in results.accuracy if a.row == "baseline")
    assert base.status == "degenerate"
    assert results.warnings[0].code == "baseline_degenerate"  # the first thing every report shows
    # Every change against a degenerate baseline is flagged, even where the defended row itself is fine.
    assert {m.status for m in results.matrix} == {"degenerate"}
    assert all("baseline" in m.reason for m in results.matrix) and not results.findings
    assert {c.status for c in results.checks} == {"inconclusive"}
    out = tmp_path / "report"
    render_reports(results, out, formats=("html", "json"))
    html = (out / "report.html").read_text()
    assert html.index("baseline_degenerate") < html.index('id="matrix"')
    assert json.loads((out / "results.json").read_text())["warnings"][0]["code"] == "baseline_degenerate"


def test_get_accuracy_warns_on_a_constant_model(caplog: pytest.LogCaptureFixture):
    from amulet.assess._data import make_model_factory
    from amulet.recipes import Recipe
    from amulet.utils import TrainConfig, check_utility, get_accuracy

    arch, bundle = _arch_and_bundle(tiny_spec(risks=FAIRNESS))
    loader = bundle.test.loader(128)

    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[1.0, 0.0]]).expand(len(x), 2)

    with caplog.at_level(logging.WARNING, logger="amulet.utils._evaluation"):
        accuracy = get_accuracy(Constant(), loader, "cpu")
    assert accuracy == pytest.approx(100.0 * (bundle.test.y == 0).float().mean().item())  # return value unchanged
    assert any("degenerate" in r.getMessage() and "100.0%" in r.getMessage() for r in caplog.records)
    utility = check_utility(bundle.test.y, torch.zeros(len(bundle.test.y), dtype=torch.long))
    assert utility.degenerate and utility.top_class_share == 100.0 and utility.p_value >= 0.05
    # A trained model is not degenerate, and get_accuracy stays silent on it.
    model = Recipe(TrainConfig(epochs=5, batch_size=64, lr=0.01)).train(make_model_factory(arch), bundle.train, seed=0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amulet.utils._evaluation"):
        get_accuracy(model, loader, "cpu")
    assert not [r for r in caplog.records if "degenerate" in r.getMessage()]


# --- No false "complete" ---------------------------------------------------------------------------------------------


def test_an_uploaded_model_with_the_wrong_input_width_fails_the_assessment_and_exits_2(tmp_path: Path):
    from amulet.assess._data import make_model_factory
    from amulet.io import save_model

    spec = tiny_spec(risks=FAIRNESS, seeds=[0], policy=[])
    arch, _ = _arch_and_bundle(spec)
    narrow = {**arch, "input_shape": [6]}
    _, weights = save_model(make_model_factory(narrow)(), tmp_path / "upload", narrow)
    spec["model"]["weights"] = str(weights)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["assess", str(path), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "-q",
              "--format", "json,junit"],
    )  # fmt: skip
    data = json.loads((out / "results.json").read_text())
    assert data["status"] == "failed"
    assert result.exit_code == data["exit_code"] == 2, result.output
    assert "baseline_failed" in [w["code"] for w in data["warnings"]]
    assert all(c["status"] == "error" for c in data["cells"])
    assert "FAILED" in result.output
    assert '<error message="assessment failed' in (out / "junit.xml").read_text()


@pytest.mark.usefixtures("test_registrations")
def test_a_cell_that_errors_makes_the_assessment_partial_and_never_exit_0(tmp_path: Path):
    spec = tiny_spec(
        risks=[*FAIRNESS, {"risk": "poisoning", "attack": "t_broken"}],
        seeds=[0],
        policy=[{"metric": "discriminatory_behavior.demographic_parity", "op": "<=", "threshold": 1.0}],
    )
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu")
    assert {c.status for c in results.checks} == {"pass"}  # every check passes ...
    assert results.status == "partial"
    assert results.exit_code == 2  # ... but an errored cell never lets the assessment exit 0
    assert "cell_errors" in [w.code for w in results.warnings]


# --- Honest intervals ------------------------------------------------------------------------------------------------


def _cells(plan, values: dict, model: dict | None = None) -> list[CellResult]:
    out = []
    for cell in plan.cells:
        i = plan.spec.seeds.index(cell.seed)
        metrics = {k: v[i] for k, v in values.get((cell.row, cell.risk), {}).items()}
        metrics.update({k: v[i] for k, v in (model or {}).get(cell.row, {}).items()})
        out.append(CellResult(key=cell.key, row=cell.row, risk=cell.risk, attack=cell.attack, seed=cell.seed,
                              status="ok" if metrics else "not_run", metrics=metrics))  # fmt: skip
    return out


def _utility(acc: list[float]) -> dict[str, list[float]]:
    return {
        "model.test_accuracy": acc,
        "model.majority_rate": [76.0] * len(acc),
        "model.top_class_share": [80.0] * len(acc),
        "model.accuracy_p_value": [1e-6] * len(acc),
    }


def test_intervals_of_bounded_metrics_stay_inside_their_range_with_two_seeds():
    plan = plan_assessment(
        load_spec(tiny_spec(seeds=[0, 1], defenses=[{"defense": "outlier_removal"}], risks=[{"risk": "evasion"}]))
    )
    values = {
        ("baseline", "evasion"): {"robust_accuracy": [2.0, 98.0], "attack_success_rate": [97.0, 3.0]},
        ("outlier_removal", "evasion"): {"robust_accuracy": [90.0, 10.0], "attack_success_rate": [5.0, 95.0]},
    }
    model = {"baseline": _utility([81.0, 99.0]), "outlier_removal": _utility([82.0, 98.0])}
    results = aggregate_results(plan, _cells(plan, values, model))
    for m in results.metrics:
        if m.unit == "%" and m.n:
            # The raw t-interval of [2, 98] is [-562, 662]: truncated to [0, 100].
            assert 0.0 <= m.ci_low <= m.mean <= m.ci_high <= 100.0, (m.row, m.metric)
            assert -100.0 <= m.delta.ci_low <= m.delta.ci_high <= 100.0 if m.delta else True
    robust = results.metric("baseline", "evasion", "robust_accuracy")
    assert (robust.ci_low, robust.ci_high) == (0.0, 100.0)
    acc = next(a for a in results.accuracy if a.row == "baseline")
    assert acc.ci_low >= 0.0 and acc.ci_high == 100.0
    assert results.warnings[0].code == "few_seeds" and "2 seeds" in results.warnings[0].message
    three = plan_assessment(load_spec(tiny_spec(seeds=[0, 1, 2], risks=[{"risk": "evasion"}])))
    assert not [w for w in aggregate_results(three, []).warnings if w.code == "few_seeds"]


def test_targets_all_decided_the_same_way_warn_at_the_top():
    """A distribution-inference cell whose victims all fell on one side of the threshold is named in a warning."""
    plan = plan_assessment(
        load_spec(tiny_spec(seeds=[0, 1, 2], risks=[{"risk": "distribution_inference", "attack": "suri_evans_2022"}]))
    )
    di = {"distinguishing_accuracy": [0.5, 0.75, 0.5], "auc": [0.9, 0.9, 0.85], "one_sided": [1.0, 0.0, 1.0]}
    values = {("baseline", "distribution_inference"): di}
    results = aggregate_results(plan, _cells(plan, values, {"baseline": _utility([84.0, 85.0, 83.0])}))
    warning = next(w for w in results.warnings if w.code == "one_sided_decisions")
    assert warning.message.startswith("2 cell(s) decided every target model the same way")
    assert "baseline x distribution_inference (suri_evans_2022), seed 0" in warning.message
    assert "seed 2" in warning.message and "seed 1" not in warning.message
    di["one_sided"] = [0.0, 0.0, 0.0]
    again = aggregate_results(plan, _cells(plan, values, {"baseline": _utility([84.0, 85.0, 83.0])}))
    assert not [w for w in again.warnings if w.code == "one_sided_decisions"]


def test_headline_metric_bounds_clip_unitless_intervals():
    from amulet.assess._stats import clip_interval
    from amulet.registry import HeadlineMetric

    auc = HeadlineMetric("auc", "AUC", True, bounds=(0.0, 1.0))
    assert auc.value_range == (0.0, 1.0)
    assert HeadlineMetric("x", "x", True, unit="%").value_range == (0.0, 100.0)
    assert HeadlineMetric("mse", "MSE", False).value_range is None
    assert clip_interval(0.4, 1.3, auc.value_range) == (0.4, 1.0)
    with pytest.raises(ValueError, match="bounds"):
        HeadlineMetric("bad", "bad", True, bounds=(1.0, 0.0))


# --- One display convention -------------------------------------------------------------------------------------------


def test_one_sign_and_unit_convention():
    # The change is defended - baseline, in the metric's own units; % metrics in percentage points.
    assert format_change(34.9, "%") == "+34.90 pts"
    assert format_change(-6.45, "%") == "-6.45 pts"
    assert format_change(0.035, "") == "+0.035"
    assert format_change(-0.349, "") == "-0.349"
    assert format_value(76.04, "%") == "76.04 %" and format_value(0.7231, "") == "0.723"
    assert format_change(None, "%") == format_value(math.nan, "") == "n/a"


def test_heatmap_colours_follow_significance_on_a_fixed_scale():
    plan = plan_assessment(
        load_spec(
            tiny_spec(
                seeds=[0, 1, 2],
                defenses=[{"defense": "outlier_removal"}, {"defense": "adversarial_training"}],
                risks=[{"risk": "evasion"}],
            )
        )
    )
    values = {
        ("baseline", "evasion"): {"robust_accuracy": [60.0, 62.0, 61.0], "attack_success_rate": [30.0, 29.0, 31.0]},
        # A large change that is not significant (seeds disagree): drawn neutral, not strong red/blue.
        ("outlier_removal", "evasion"): {"robust_accuracy": [20.0, 90.0, 35.0], "attack_success_rate": [50, 52, 51]},
        # A small, significant change: coloured, and the same colour whatever else is in the run.
        ("adversarial_training", "evasion"): {"robust_accuracy": [64.0, 66.1, 65.0], "attack_success_rate": [9, 8, 9]},
    }
    model = {row: _utility([82.0, 83.0, 82.5]) for row in ("baseline", "outlier_removal", "adversarial_training")}
    results = aggregate_results(plan, _cells(plan, values, model))
    cells = {m.row: m for m in results.matrix}
    noisy, small = cells["outlier_removal"], cells["adversarial_training"]
    assert not noisy.significant and abs(noisy.susceptibility_change) > SATURATION / 4
    assert cell_colour(noisy) == NEUTRAL
    assert small.significant and small.direction == "less_susceptible"
    blue = cell_colour(small)
    assert blue != NEUTRAL and int(blue[5:7], 16) > int(blue[1:3], 16)
    assert results.findings == [small]
    assert cell_label(small) == "+4.03 pts*" and cell_label(noisy).endswith("pts")
    svg = heatmap_svg(results)
    assert svg.count(f'fill="{NEUTRAL}"') >= 1 and f'fill="{blue}"' in svg
    # The scale is fixed: adding a huge change elsewhere does not repaint this cell.
    values[("outlier_removal", "evasion")]["robust_accuracy"] = [1.0, 1.5, 1.2]
    again = aggregate_results(plan, _cells(plan, values, model))
    assert cell_colour(next(m for m in again.matrix if m.row == "adversarial_training")) == blue


def test_schema_1_0_results_still_read():
    plan = plan_assessment(load_spec(tiny_spec(seeds=[0, 1, 2], risks=[{"risk": "evasion"}])))
    values = {("baseline", "evasion"): {"robust_accuracy": [60.0, 62.0, 61.0], "attack_success_rate": [1.0] * 3}}
    data = json.loads(aggregate_results(plan, _cells(plan, values)).model_dump_json())
    data["schema_version"] = "1.0"
    for key in ("status", "warnings", "findings"):
        data.pop(key)
    for cell in data["matrix"]:
        for key in ("reason", "significant", "unit"):
            cell.pop(key)
    data["cells"][0]["status"] = "error"
    old = AssessmentResults.model_validate(data)
    assert old.status == "partial" and old.exit_code == 2
    with pytest.raises(ValueError, match="schema_version"):
        AssessmentResults.model_validate({**data, "schema_version": "9.0"})
