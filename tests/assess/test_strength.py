"""Attack strength next to every result: derived from the parameters a cell ran with and the counts it
reported, carried per cell and per column in the results JSON (schema 1.3, older files upgraded), shown in
the HTML and PDF reports, and a weak budget flagged and kept out of the findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from results_testing import UTILITY, aggregate_chosen

from amulet.assess import AssessmentResults, render_reports
from amulet.assess._display import strength_label
from amulet.assess._report import render_json
from amulet.assess._schema import RESULTS_SCHEMA_VERSION, results_json_schema
from amulet.assess._strength import WEAK_NOTE, attack_strength
from amulet.assess._summary import executive_summary

from .test_report_layout import _pages, needs_pdftotext


def test_lira_strength_comes_from_its_parameters_and_candidate_count():
    weak = attack_strength("lira", {"num_shadow": 4, "scores": "online", "pkeep": 0.5}, {"n_candidates": 600.0})
    assert weak is not None and weak.weak
    assert weak.summary == "4 shadow models (online; each record IN for 2, OUT for 2), 600 candidates"
    assert weak.budget["shadow_models"] == 4 and weak.budget["candidates"] == 600
    assert weak.note.startswith(WEAK_NOTE) and weak.raise_to == {"num_shadow": 16}
    strong = attack_strength("lira", {"num_shadow": 64, "scores": "offline", "pkeep": 0.5}, {"n_candidates": 5000.0})
    assert strong is not None and not strong.weak and strong.note == "" and strong.raise_to == {}
    assert strong.summary.startswith("64 shadow models (offline; each record IN for 32, OUT for 32)")
    assert attack_strength("lira", {"num_shadow": 16, "scores": "online"}, {}).weak is False  # the floor itself


def test_distribution_inference_counts_target_and_adversary_models_per_ratio():
    params = {"num_models": 8, "num_victim_models": 8, "ratio1": 0.2, "ratio2": 0.8, "property": "sex",
              "train_subsample": 800}  # fmt: skip
    # the victims the attack actually scored (both ratios) win over the parameter
    ran = attack_strength("suri_evans_2022", {**params, "num_victim_models": 2}, {"n_victim_models": 16.0})
    assert ran is not None and ran.budget["target_models_per_ratio"] == 8 and not ran.weak
    few = attack_strength("suri_evans_2022", {**params, "num_victim_models": 2}, {"n_victim_models": 4.0})
    assert few is not None and few.weak and few.raise_to == {"num_victim_models": 8}
    assert few.summary.startswith("2 target + 8 adversary models per ratio (0.2 vs 0.8 sex)")
    adversary = attack_strength("whitebox_pim", {**params, "num_models": 4, "meta_epochs": 100}, {})
    assert adversary is not None and adversary.weak and adversary.raise_to == {"num_models": 8}
    assert "100 meta-classifier steps" in adversary.summary


def test_other_attacks_show_steps_queries_and_the_attack_model():
    pgd = attack_strength("pgd", {"epsilon": 0.1, "iterations": 10, "step_size": None, "max_samples": 1000}, {})
    assert pgd is not None and not pgd.weak
    assert pgd.budget["step_size"] == pytest.approx(0.025)  # Madry's 2.5 * epsilon / steps
    assert pgd.summary == "10 steps, L-inf epsilon 0.1, step size 0.025, up to 1,000 test rows"
    stolen = attack_strength("model_extraction", {"epochs": 20, "loss_type": "mse", "query_budget": None},
                             {"n_queries": 2500.0})  # fmt: skip
    assert stolen is not None and stolen.budget["queries"] == 2500 and stolen.summary.startswith("2,500 queries")
    inferred = attack_strength("duddu_cikm_2022", {"max_iter": 200, "max_adversary_rows": 5000}, {})
    assert inferred is not None and inferred.summary.startswith("attack MLP ")
    assert attack_strength("subgroup_metrics", {}, {}) is None  # a measurement has no budget
    generic = attack_strength("t_unknown", {"rounds": 3}, {})
    assert generic is not None and generic.summary == "rounds 3" and not generic.weak


SPEC: dict[str, Any] = {
    "name": "strength",
    "dataset": {"name": "census"},
    "defenses": [{"name": "dp", "defense": "dp_sgd"}],
    "risks": [
        {"risk": "membership_inference", "attack": "lira", "params": {"num_shadow": 4}},
        {
            "risk": "distribution_inference",
            "attack": "suri_evans_2022",
            "params": {"num_models": 8, "num_victim_models": 8},
        },
    ],
    "seeds": [0, 1, 2],
}


def _results() -> AssessmentResults:
    """Real aggregation over chosen metrics: the dp row lowers LiRA's AUC and distribution inference's accuracy
    significantly; LiRA ran with a weak budget (4 shadows), distribution inference with 8 + 8 models per ratio."""

    def metrics(c: Any, noise: float) -> dict[str, float]:
        chosen: dict[str, float] = {"model.test_accuracy": 85.0 + noise, **UTILITY}
        if c.risk == "membership_inference":
            auc = (0.56 if c.row == "baseline" else 0.50) + noise
            chosen.update(auc=auc, tpr_at_fpr=0.01, balanced_acc=auc, n_candidates=5000.0)
        else:
            accuracy = (0.90 if c.row == "baseline" else 0.60) + noise
            chosen.update(distinguishing_accuracy=accuracy, auc=accuracy, n_victim_models=16.0)
        return chosen

    return aggregate_chosen(SPEC, metrics)


def test_a_weak_budget_is_flagged_and_never_a_finding():
    results = _results()
    lira, di = results.columns
    assert all(c.strength is not None for c in results.cells)
    assert lira.strength is not None and lira.strength.weak and lira.strength.budget["shadow_models"] == 4
    assert di.strength is not None and not di.strength.weak and di.strength.budget["target_models_per_ratio"] == 8
    weak_cell = next(m for m in results.matrix if m.column == lira.label)
    assert weak_cell.weak_budget and weak_cell.significant  # the test's verdict is kept and shown ...
    assert [f.column for f in results.findings] == [di.label]  # ... but only the strong column is a finding
    (warning,) = [w for w in results.warnings if w.code == "weak_budget"]
    assert warning.message.startswith(f"{lira.label}: {WEAK_NOTE}")
    assert "1 significant change left out of the findings" in warning.message
    (item,) = [it for it in executive_summary(results)["ranked"] if "weak attack budget" in it["title"]]
    assert item["mitigation"] == "Raise num_shadow to at least 16 and measure again."
    assert strength_label(lira).endswith("WEAK BUDGET") and not strength_label(di).endswith("WEAK BUDGET")


def test_strength_survives_the_json_round_trip_and_matches_the_schema():
    import jsonschema

    results = _results()
    text = render_json(results)
    data = json.loads(text)
    assert data["schema_version"] == RESULTS_SCHEMA_VERSION == "1.3"
    jsonschema.validate(data, results_json_schema())
    assert data["columns"][0]["strength"]["budget"]["shadow_models"] == 4
    assert data["cells"][0]["strength"]["summary"].startswith("4 shadow models")
    back = AssessmentResults.model_validate_json(text)
    assert back.columns == results.columns and back.cells == results.cells
    assert back.findings == results.findings and back.warnings == results.warnings  # nothing derived twice


def test_a_results_file_before_1_3_gets_its_strength_derived():
    results = _results()
    old = json.loads(render_json(results))
    old["schema_version"] = "1.2"
    for item in (*old["cells"], *old["columns"]):
        item.pop("strength")
    for cell in old["matrix"]:
        cell.pop("weak_budget")
    old["warnings"] = [w for w in old["warnings"] if w["code"] != "weak_budget"]
    old["findings"] = [m for m in old["matrix"] if m["significant"]]  # 1.2 counted the weak cell as a finding
    back = AssessmentResults.model_validate(old)
    assert back.columns[0].strength == results.columns[0].strength
    assert [c.strength for c in back.cells] == [c.strength for c in results.cells]
    assert [f.column for f in back.findings] == [f.column for f in results.findings]
    assert [w.code for w in back.warnings].count("weak_budget") == 1


@needs_pdftotext
def test_html_and_pdf_show_each_attacks_strength_next_to_its_result(tmp_path: Path):
    results = _results()
    paths = render_reports(results, tmp_path, formats=("html", "pdf"))
    html = paths["html"].read_text()
    assert "4 shadow models (online; each record IN for 2, OUT for 2), 5,000 candidates" in html
    assert "8 target + 8 adversary models per ratio" in html
    assert "weak budget: not a finding" in html
    text = " ".join(" ".join(line.split()) for page in _pages(paths["pdf"]) for line in page)
    assert "Attack strength (as run): 4 shadow models" in text
    assert "Attack strength (as run): 8 target + 8 adversary models per ratio" in text
    assert text.count("weak budget") >= 3  # matrix column, per-risk section, warnings
