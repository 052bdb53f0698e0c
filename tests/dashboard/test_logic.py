"""Pure logic of the dashboard: schema-driven forms, spec arithmetic and heatmap layout."""

from __future__ import annotations

import re

import pytest

from dashboard.forms import check_value, parse_sweep, schema_fields
from dashboard.heatmap import compare_grids, matrix_grid, selected_cell
from dashboard.specs import count_work, parse_seeds, section_of, spec_from_yaml, spec_to_yaml


def test_schema_fields_read_pydantic_schemas_from_the_registry() -> None:
    from amulet import registry

    for info in [*registry.attacks(), *registry.defenses()]:
        schema = info.params.model_json_schema()
        fields = schema_fields(schema)
        assert [f.name for f in fields] == list(schema.get("properties", {}))
        for field in fields:
            assert field.kind in ("integer", "number", "boolean", "enum", "string", "list", "json")
            if field.default is not None and field.kind != "json":
                assert check_value(field, field.default) is None, (info.key, field.name)


def test_sweep_values_are_checked_against_bounds() -> None:
    schema = {"properties": {"k": {"type": "integer", "minimum": 1, "maximum": 9, "default": 3}}}
    field = schema_fields(schema)[0]
    assert parse_sweep(field, "1, 3,9") == [1, 3, 9]
    with pytest.raises(ValueError, match=re.escape("The 'k' parameter must be >= 1 and <= 9. Got 10 instead.")):
        parse_sweep(field, "3, 10")
    with pytest.raises(ValueError, match="takes integer values"):
        parse_sweep(field, "2.5")


def test_enum_and_optional_fields() -> None:
    schema = {
        "$defs": {"Mode": {"enum": ["a", "b"], "type": "string"}},
        "properties": {
            "mode": {"$ref": "#/$defs/Mode", "default": "a"},
            "limit": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}], "default": None},
        },
    }
    mode, limit = schema_fields(schema)
    assert mode.kind == "enum" and mode.choices == ("a", "b")
    assert limit.kind == "number" and limit.nullable and limit.exclusive_minimum == 0
    assert check_value(limit, None) is None and check_value(limit, 0) is not None


def test_count_work_expands_lists_like_the_engine_plan() -> None:
    from amulet.assess import plan_assessment
    from amulet.registry import catalog

    spec = {
        "dataset": {"name": "census"},
        "defenses": [
            {"stack": [{"defense": "adversarial_training", "params": {"epsilon": [0.05, 0.1]}}]},
            {"stack": [{"defense": "outlier_removal", "params": {"percent": [1.0, 2.0, 5.0]}}]},
        ],
        "risks": [{"risk": "evasion"}, {"risk": "poisoning"}],
        "seeds": [0, 1],
    }
    plan = plan_assessment(spec)
    work = count_work(spec, catalog())
    assert work["rows"] == len(plan.rows) == 6
    assert work["trainings"] == len(plan.trainings) and work["cells"] == len(plan.cells)


def test_seeds_yaml_and_error_sections() -> None:
    assert parse_seeds("3, 0-2") == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="distinct"):
        parse_seeds("1, 1")
    spec = {"name": "x", "dataset": {"name": "census"}, "risks": [{"risk": "evasion", "params": {"eps": [0.1]}}]}
    assert spec_from_yaml(spec_to_yaml(spec)) == spec
    with pytest.raises(ValueError, match="mapping"):
        spec_from_yaml("- a\n- b\n")
    assert section_of("policy[0].row") == "policy"


RESULTS = {
    "rows": [{"name": "baseline"}, {"name": "dp"}, {"name": "adv"}],
    "columns": [{"label": "mi (lira)"}, {"label": "evasion (pgd)"}],
    "matrix": [
        {"row": "dp", "column": "mi (lira)", "intended": True, "susceptibility_change": -0.2, "direction": "x"},
        {"row": "adv", "column": "evasion (pgd)", "intended": True, "susceptibility_change": -0.3},
        {"row": "adv", "column": "mi (lira)", "intended": False, "susceptibility_change": 0.1},
    ],
}


def test_matrix_grid_and_comparison() -> None:
    grid = matrix_grid(RESULTS)
    assert grid.rows == ["dp", "adv"]
    assert grid.z == [[-0.2, None], [0.1, -0.3]]
    assert grid.intended == [[True, False], [False, True]]
    other = {**RESULTS, "matrix": [{**RESULTS["matrix"][2], "susceptibility_change": 0.25}]}
    rows = {(r["row"], r["column"]): r for r in compare_grids(RESULTS, other)}
    assert rows[("adv", "mi (lira)")]["B - A"] == pytest.approx(0.15)
    assert rows[("dp", "mi (lira)")]["B - A"] is None


def test_selected_cell_reads_plotly_events() -> None:
    event = {"selection": {"points": [{"customdata": ["adv", "evasion (pgd)"], "x": "evasion (pgd)", "y": "adv"}]}}
    assert selected_cell(event) == ("adv", "evasion (pgd)")
    assert selected_cell({"selection": {"points": []}}) is None
