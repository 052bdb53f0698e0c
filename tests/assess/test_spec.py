"""Assessment specs: loading from YAML/JSON/dicts, errors that name the field path and the allowed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amulet import registry
from amulet.assess import AssessmentSpec, SpecError, load_spec, plan_assessment, spec_json_schema

from .conftest import tiny_spec

YAML = """
name: yaml spec
dataset: {name: census, training_size: 0.1}
defenses:
  - defense: adversarial_training
    params: {epsilon: [0.05, 0.1, 0.2]}
  - name: stacked
    stack:
      - {defense: adversarial_training}
      - {defense: outlier_removal, params: {percent: 5}}
risks:
  - {risk: evasion}
policy:
  - {metric: evasion.robust_accuracy, op: ">=", threshold: 50}
seeds: [3, 4]
"""


def _problems(exc: SpecError) -> dict[str, str]:
    return {e["path"]: e["message"] for e in exc.errors}


def test_yaml_text_file_json_and_dict_give_the_same_spec(tmp_path: Path):
    from_text = load_spec(YAML)
    path = tmp_path / "spec.yaml"
    path.write_text(YAML)
    from_file = load_spec(path)
    from_str_path = load_spec(str(path))
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps(from_text.model_dump(mode="json")))
    from_json = load_spec(as_json)
    from_dict = load_spec(from_text.model_dump(mode="json"))
    assert from_text == from_file == from_str_path == from_json == from_dict
    assert isinstance(from_text, AssessmentSpec)
    assert from_text.seeds == [3, 4]
    assert load_spec(from_text) is from_text


def test_list_values_expand_into_rows_and_stacks_stay_one_row():
    plan = plan_assessment(load_spec(YAML))
    names = [r.name for r in plan.rows]
    assert names == [
        "baseline",
        "adversarial_training (epsilon=0.05)",
        "adversarial_training (epsilon=0.1)",
        "adversarial_training (epsilon=0.2)",
        "stacked",
    ]
    assert plan.row("adversarial_training (epsilon=0.1)").stack == [
        {"defense": "adversarial_training", "params": {"epsilon": 0.1}}
    ]
    stacked = plan.row("stacked")
    assert [e["defense"] for e in stacked.stack] == ["adversarial_training", "outlier_removal"]
    assert stacked.targets == ["evasion", "poisoning"]
    assert plan.recipe("stacked").defense_keys == ("adversarial_training", "outlier_removal")


def test_relative_paths_resolve_against_the_spec_file(tmp_path: Path):
    (tmp_path / "data.csv").write_text("a,label\n1,0\n2,1\n")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("dataset: {path: data.csv, label: label}\nrisks: [{risk: evasion}]\n")
    spec = load_spec(spec_file)
    assert spec.dataset.path == str(tmp_path / "data.csv")


def test_unknown_defense_names_the_path_and_the_allowed_values():
    bad = tiny_spec(defenses=[{"defense": "adversarial_training"}, {"stack": [{"defense": "dpsgd_typo"}]}],
                    risks=[{"risk": "evasion"}])  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    problems = _problems(info.value)
    assert "defenses[1].stack[0].defense" in problems
    message = problems["defenses[1].stack[0].defense"]
    assert "dpsgd_typo" in message
    for key in (d.key for d in registry.defenses()):
        assert key in message
    assert "defenses[1].stack[0].defense" in str(info.value)


def test_bad_parameter_value_names_the_parameter_path():
    bad = tiny_spec(defenses=[{"defense": "adversarial_training", "params": {"epsilon": [0.1, -1.0]}}],
                    risks=[{"risk": "evasion", "params": {"iterations": "many"}}])  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    problems = _problems(info.value)
    assert "defenses[0].stack[0].params.epsilon" in problems
    assert "greater than or equal to 0" in problems["defenses[0].stack[0].params.epsilon"]
    assert "risks[0].params.iterations" in problems


def test_structural_errors_name_paths_allowed_fields_and_literals():
    bad = tiny_spec(risks=[{"risk": "evasion"}])
    bad["dataset"]["nme"] = "x"
    bad["training"]["optimizer"] = "adagrad"
    bad["seeds"] = [1, 1]
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    problems = _problems(info.value)
    assert "allowed fields here: name, path, label" in problems["dataset.nme"]
    assert "'adam' or 'sgd'" in problems["training.optimizer"]
    assert "distinct" in problems["seeds"]


def test_missing_risks_unknown_risk_attack_and_policy_metric():
    with pytest.raises(SpecError) as info:
        load_spec({"dataset": {"name": "census"}})
    assert _problems(info.value) == {"risks": "this field is required"}

    bad = tiny_spec(
        risks=[{"risk": "evasion", "attack": "fgsm"}, {"risk": "stealing"}, {"risk": "discriminatory_behavior"}],
        policy=[{"metric": "membership_inference.auc", "op": "<=", "threshold": 0.6},
                {"metric": "discriminatory_behavior.p_rule", "op": ">=", "threshold": 80, "row": "nope*"}],
    )  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    problems = _problems(info.value)
    assert "allowed values: pgd" in problems["risks[0].attack"]
    assert "evasion" in problems["risks[1].risk"] and "membership_inference" in problems["risks[1].risk"]
    assert "discriminatory_behavior.p_rule" in problems["policy[0].metric"]
    assert "'baseline'" in problems["policy[1].row"]


def test_dataset_and_model_errors():
    with pytest.raises(SpecError) as info:
        load_spec(
            {"dataset": {"name": "imagenet"}, "model": {"architecture": "transformer"}, "risks": [{"risk": "evasion"}]}
        )
    problems = _problems(info.value)
    assert "census" in problems["dataset"] and "fmnist" in problems["dataset"]
    with pytest.raises(SpecError) as info:
        load_spec({"dataset": {"path": "/nonexistent/x.csv", "label": "y"}, "model": {"architecture": "transformer"},
                   "risks": [{"risk": "evasion"}]})  # fmt: skip
    problems = _problems(info.value)
    assert "linearnet" in problems["model.architecture"]
    assert "does not exist" in problems["dataset.path"]


def test_baseline_is_a_reserved_row_name_and_two_loops_cannot_stack():
    bad = tiny_spec(defenses=[{"name": "baseline", "stack": [{"defense": "adversarial_training"}]}],
                    risks=[{"risk": "evasion"}])  # fmt: skip
    with pytest.raises(SpecError, match="reserved"):
        load_spec(bad)
    loops = [d.key for d in registry.defenses() if d.make_stage(d.params()).kind == "loop"]
    if len(loops) < 2:
        pytest.skip("fewer than two registered defenses replace the training loop")
    two_loops = tiny_spec(defenses=[{"stack": [{"defense": loops[0]}, {"defense": loops[1]}]}],
                          risks=[{"risk": "evasion"}])  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec(two_loops)
    assert "at most one defense that replaces the training loop" in _problems(info.value)["defenses[0].stack"]


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec("dataset: [unclosed\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec("- a\n- b\n")
    with pytest.raises(SpecError, match="does not exist"):
        load_spec("missing-spec.yaml")


def test_json_schema_describes_the_spec():
    schema = spec_json_schema()
    json.dumps(schema)
    assert schema["title"] == "Amulet assessment spec"
    assert {"dataset", "risks", "defenses", "policy", "seeds"} <= set(schema["properties"])
    assert schema["required"] == ["dataset", "risks"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(load_spec(YAML).model_dump(mode="json"), schema)
