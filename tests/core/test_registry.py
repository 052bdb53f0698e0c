"""The registry: risks, attacks, defenses and metrics are complete, consistent and serialisable."""

from __future__ import annotations

import json
from importlib import metadata as importlib_metadata

import pytest
from pydantic import BaseModel

from amulet import registry
from amulet.registry import AttackInfo, HeadlineMetric, RiskInfo, ThreatModel, _store

#: The eight risks of upstream Amulet with their codes in the interaction matrix. A new risk is added to
#: ``registry.BUILTIN_RISK_PACKAGES`` only; these tests check that the eight keep their codes.
EXPECTED_RISKS = {
    "evasion": "S1",
    "poisoning": "S2",
    "unauth_model_ownership": "S3",
    "membership_inference": "P1",
    "attribute_inference": "P2",
    "data_reconstruction": "P3",
    "distribution_inference": "P4",
    "discriminatory_behavior": "F",
}


def test_all_eight_risks_are_registered_with_their_codes():
    assert EXPECTED_RISKS.items() <= {r.key: r.code for r in registry.risks()}.items()


def test_each_builtin_risk_package_registers_the_risk_named_after_it_in_matrix_order():
    keys = [package.rsplit(".", 1)[1] for package in registry.BUILTIN_RISK_PACKAGES]
    assert [r.key for r in registry.risks()][: len(keys)] == keys
    codes = [r.code for r in registry.risks()]
    assert len(codes) == len(set(codes)), "two risks share a code"


def test_an_entry_point_adds_an_out_of_tree_risk_and_a_broken_one_is_skipped(monkeypatch, tmp_path, caplog):
    module = tmp_path / "toy_risk_register.py"
    module.write_text(
        "from amulet.registry import HeadlineMetric, RiskInfo, register_risk\n"
        "register_risk(RiskInfo('toy_risk', 'T1', 'Toy', 'security', 'A toy risk.',"
        " (HeadlineMetric('m', 'M', True, '', 'A toy metric.'),)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib_metadata.EntryPoint("toy", "toy_risk_register", registry.ENTRY_POINT_GROUP),
        importlib_metadata.EntryPoint("broken", "no_such_module_anywhere", registry.ENTRY_POINT_GROUP),
    ]
    real = importlib_metadata.entry_points

    def entry_points(**selection):
        # Only the risk group is replaced; other libraries read their own groups as usual.
        return points if selection.get("group") == registry.ENTRY_POINT_GROUP else real(**selection)

    monkeypatch.setattr(_store.metadata, "entry_points", entry_points)
    monkeypatch.setattr(_store, "_LOADED", False)
    try:
        assert registry.get_risk("toy_risk").code == "T1"
        assert "no_such_module_anywhere" in caplog.text
    finally:
        registry.unregister("risk", "toy_risk")


@pytest.mark.parametrize("risk", registry.risks(), ids=lambda r: r.key)
def test_every_risk_declares_headline_metrics_with_direction(risk: RiskInfo):
    assert risk.headline_metrics, f"{risk.key} has no headline metric"
    keys = [m.key for m in risk.headline_metrics]
    assert len(keys) == len(set(keys))
    for metric in risk.headline_metrics:
        assert isinstance(metric.higher_is_riskier, bool)
        assert metric.name and metric.description
        assert metric.unit in {"", "%"}
    assert risk.metric(keys[0]).key == keys[0]
    with pytest.raises(KeyError, match="no headline metric"):
        risk.metric("nope")


def test_directions_follow_the_metric_definitions():
    # A flipped sign convention here would invert every verdict of the interaction matrix.
    assert registry.get_risk("evasion").metric("robust_accuracy").higher_is_riskier is False
    assert registry.get_risk("data_reconstruction").metric("mse").higher_is_riskier is False
    assert registry.get_risk("discriminatory_behavior").metric("p_rule").higher_is_riskier is False
    assert registry.get_risk("membership_inference").metric("auc").higher_is_riskier is True
    assert registry.get_risk("discriminatory_behavior").metric("demographic_parity").higher_is_riskier is True


def _params_models() -> list[tuple[str, type[BaseModel]]]:
    return [(f"attack:{a.key}", a.params) for a in registry.attacks()] + [
        (f"defense:{d.key}", d.params) for d in registry.defenses()
    ]


@pytest.mark.parametrize(("name", "params"), _params_models(), ids=[n for n, _ in _params_models()])
def test_every_parameter_has_a_default_and_help_text(name: str, params: type[BaseModel]):
    # Forms in the dashboard and the catalog are generated from these models.
    for field_name, field in params.model_fields.items():
        assert not field.is_required(), f"{name}.{field_name} has no default"
        assert field.description, f"{name}.{field_name} has no help text"
    params()  # defaults validate


@pytest.mark.parametrize("attack", registry.attacks(), ids=lambda a: a.key)
def test_every_attack_has_a_threat_model_and_a_runner(attack: AttackInfo):
    assert attack.risk in {r.key for r in registry.risks()}
    assert attack.threat_model.knowledge and attack.threat_model.data and attack.threat_model.budget
    assert callable(attack.run)


@pytest.mark.parametrize("defense", registry.defenses(), ids=lambda d: d.key)
def test_every_defense_targets_known_risks_and_builds_its_stage(defense):
    assert set(defense.targets) <= {r.key for r in registry.risks()}
    stage = defense.make_stage(defense.params())
    assert stage.defense == defense.key
    assert stage.kind in {"data", "batch", "loop", "post"}
    json.dumps(stage.params)


def test_catalog_is_json_serialisable_and_lists_everything():
    catalog = json.loads(json.dumps(registry.catalog()))
    assert [r["key"] for r in catalog["risks"]] == [r.key for r in registry.risks()]
    assert len(catalog["attacks"]) == len(registry.attacks())
    assert len(catalog["defenses"]) == len(registry.defenses())
    for attack in catalog["attacks"]:
        assert attack["params_schema"]["type"] == "object"
    # Every % metric is bounded to [0, 100] (reports keep its intervals there), listed with its range.
    for risk in catalog["risks"]:
        for metric in risk["headline_metrics"]:
            if metric["unit"] == "%":
                assert metric["bounds"] == [0.0, 100.0], (risk["key"], metric["key"])


def test_headline_metric_bounds_are_validated_and_default_from_the_unit():
    assert HeadlineMetric("auc", "AUC", True, bounds=(0, 1)).value_range == (0.0, 1.0)
    assert HeadlineMetric("acc", "Accuracy", False, unit="%").value_range == (0.0, 100.0)
    assert HeadlineMetric("mse", "MSE", False).value_range is None
    for bad in ((1.0, 0.0), (0.0, float("inf")), (0.5, 0.5)):
        with pytest.raises(ValueError, match="bounds must be two finite numbers"):
            HeadlineMetric("x", "x", True, bounds=bad)


def test_duplicate_registration_is_refused_unless_forced():
    risk = registry.get_risk("evasion")
    clash = RiskInfo(risk.key, "S9", "other", "security", "d", (HeadlineMetric("m", "m", True, "", "d"),))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_risk(clash)
    registry.register_risk(risk)  # the same entry again is fine


def test_attack_for_unknown_risk_is_refused():
    info = AttackInfo(
        key="x",
        code="X",
        name="x",
        risk="no_such_risk",
        cls=None,
        params=registry.NoParams,
        threat_model=ThreatModel("k", "d", "b"),
        run=lambda ctx, params: {},
    )
    with pytest.raises(ValueError, match="unknown risk"):
        registry.register_attack(info)


def test_unknown_keys_list_the_known_ones():
    with pytest.raises(KeyError, match="Registered attacks"):
        registry.get_attack("nope")
