"""Pure logic of the dashboard: schema-driven forms, spec arithmetic and heatmap layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amulet import registry
from amulet.assess import CellResult, MatrixCell, aggregate_results, cell_colour, cell_label, plan_assessment
from amulet.assess._display import GREY, NEUTRAL
from amulet.registry import catalog
from dashboard.comparison import changed_verdicts, compare_grids, difference_of_changes
from dashboard.datafiles import guess_label, preview_file
from dashboard.forms import check_value, parse_sweep, schema_fields
from dashboard.heatmap import heatmap_figure, matrix_grid, selected_cell
from dashboard.labels import DIRECTION_LABELS, ROW_STATUS_LABELS, VERDICT_LABELS
from dashboard.progress import STATUS_ICONS
from dashboard.result_tables import assessment_warnings, findings_table, utility_table
from dashboard.specs import count_work, parse_seeds, section_of, spec_from_yaml, spec_to_yaml


def test_schema_fields_read_pydantic_schemas_from_the_registry() -> None:

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
        {"row": "adv", "column": "mi (lira)", "intended": False, "susceptibility_change": 0.1, "delta": 0.1},
    ],
}


def test_matrix_grid_and_comparison() -> None:
    grid = matrix_grid(RESULTS)
    assert grid.rows == ["dp", "adv"]
    assert grid.z == [[-0.2, None], [0.1, -0.3]]
    assert grid.intended == [[True, False], [False, True]]
    other = {**RESULTS, "matrix": [{**RESULTS["matrix"][2], "susceptibility_change": 0.25, "delta": 0.25}]}
    rows = {(r["row"], r["column"]): r for r in compare_grids(RESULTS, other)}
    assert rows[("adv", "mi (lira)")]["A: change"] == "+0.100"  # the AUC's own unit: no "pts", no rescaling
    assert rows[("adv", "mi (lira)")]["B - A"] == "+0.150"
    assert rows[("dp", "mi (lira)")]["B - A"] == "" and rows[("dp", "mi (lira)")]["B: change"] == "not measured"


def test_selected_cell_reads_plotly_events() -> None:
    event = {"selection": {"points": [{"customdata": ["adv", "evasion (pgd)"], "x": "evasion (pgd)", "y": "adv"}]}}
    assert selected_cell(event) == ("adv", "evasion (pgd)")
    assert selected_cell({"selection": {"points": []}}) is None


# -- utility first, degenerate rows, one display convention ---------------------------------------------

#: Per row: robust accuracy (%) and clean accuracy (%) around which the seeds vary.
_ROBUST = {"baseline": 20.0, "outlier": 20.0, "dp": 8.0, "adv": 60.0}
_CLEAN = {"baseline": 84.0, "outlier": 83.8, "dp": 82.0, "adv": 76.0}
_NOISE = [0.0, 0.6, -0.5]


def _engine_results(seeds: list[int]) -> dict:
    """Results JSON from the real engine (plan + aggregate) over cells with chosen metrics: `outlier` changes
    nothing (noise only), `dp` lowers robust accuracy by 12 points (significant) at epsilon 4, and `adv`
    predicts one class for every row at the majority rate (degenerate) with a large apparent change."""

    spec = {
        "name": "display",
        "dataset": {"name": "census"},
        "defenses": [
            {"name": "outlier", "defense": "outlier_removal"},
            {"name": "dp", "defense": "dp_sgd"},
            {"name": "adv", "defense": "adversarial_training"},
        ],
        "risks": [{"risk": "evasion"}],
        "policy": [{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 10}],
        "seeds": seeds,
    }
    plan = plan_assessment(spec)
    cells = []
    for c in plan.cells:
        noise = _NOISE[c.seed % 3]
        metrics = {
            "robust_accuracy": _ROBUST[c.row] + noise * (3 if c.row == "outlier" else 0.2),
            "attack_success_rate": 100 - _ROBUST[c.row],
            "model.test_accuracy": _CLEAN[c.row] + noise * 0.1,
            "model.majority_rate": 76.0,
            "model.top_class_share": 100.0 if c.row == "adv" else 70.0,
            "model.accuracy_p_value": 0.5 if c.row == "adv" else 1e-9,
        }
        if c.row == "dp":
            metrics.update({"model.privacy_epsilon": 4.0, "model.privacy_delta": 1e-5})
        cells.append(
            CellResult(
                key=c.key,
                row=c.row,
                risk=c.risk,
                attack=c.attack,
                seed=c.seed,
                status="ok",
                metrics=metrics,
                seconds=0.1,
            )
        )
    return aggregate_results(plan, cells).model_dump(mode="json")


def test_utility_table_comes_with_interval_change_majority_rate_and_epsilon() -> None:

    table = {r["row"]: r for r in utility_table(_engine_results([0, 1, 2]))}
    assert list(table) == ["baseline", "outlier", "dp", "adv"]  # the baseline first
    base, dp, adv = table["baseline"], table["dp"], table["adv"]
    assert base["clean accuracy"] == "84.00 %" and base["change vs baseline"] == ""
    assert base["95% CI"].startswith("[") and base["95% CI"].endswith(" %]")
    assert base["majority rate"] == "76.00 %" and base["status"] == "✔ ok"
    assert dp["change vs baseline"] == "-2.00 pts"  # defended - baseline, in percentage points
    assert dp["epsilon"] == "4.00" and dp["delta (DP)"] == "1.0e-05"
    assert base["epsilon"] == ""
    assert adv["status"] == "⚠ degenerate" and "predicts one class for 100.0% of the rows" in adv["reason"]
    assert adv["top-class share"] == "100.00 %"


def test_degenerate_cells_are_grey_non_significant_neutral_and_labels_match_the_reports() -> None:

    results = _engine_results([0, 1, 2])
    grid = matrix_grid(results)
    assert grid.rows == ["outlier", "dp", "adv"]
    colours = {row: grid.colours[i][0] for i, row in enumerate(grid.rows)}
    labels = {row: grid.labels[i][0] for i, row in enumerate(grid.rows)}
    assert colours["adv"] == GREY and labels["adv"] == "degenerate"  # never "+40.00 pts"
    assert colours["outlier"] == NEUTRAL  # not significant: neutral, whatever its size
    assert colours["dp"] not in (GREY, NEUTRAL)
    assert labels["dp"] == "-12.00 pts*"  # the change in the metric's unit, not a susceptibility fraction
    # the dashboard's text and fill are exactly the reports' (the engine's display functions on the same cell)
    for cell in results["matrix"]:
        engine_cell = MatrixCell.model_validate(cell)
        i = grid.rows.index(cell["row"])
        assert grid.labels[i][0] == cell_label(engine_cell) and grid.colours[i][0] == cell_colour(engine_cell)
    # the figure draws each cell in that colour (a step scale: z = index of the colour)
    heat = heatmap_figure(grid).to_plotly_json()["data"][0]
    scale = {round(float(stop), 6): colour for stop, colour in heat["colorscale"]}
    for i, row in enumerate(grid.rows):
        z = heat["z"][i][0]
        lower = max(stop for stop in scale if stop <= z / heat["zmax"])
        assert scale[lower] == colours[row]
    assert heat["text"] == grid.labels and not heat["showscale"]
    # every cell has one clickable marker at its centre naming it (heatmap traces report no selection)
    clicks = heatmap_figure(grid).to_plotly_json()["data"][1]
    assert clicks["type"] == "scatter" and clicks["mode"] == "markers"
    cells = [(r, c) for r in grid.rows for c in grid.columns]
    assert [tuple(d) for d in clicks["customdata"]] == cells
    assert list(zip(clicks["y"], clicks["x"], strict=True)) == cells
    assert selected_cell({"selection": {"points": [{"customdata": list(cells[1])}]}}) == cells[1]
    # findings: the significant, non-degenerate cell only
    assert [(f["row"], f["change"]) for f in findings_table(results)] == [("dp", "-12.00 pts*")]


def test_warnings_at_the_top_few_seeds_and_status() -> None:

    warnings = assessment_warnings(_engine_results([0, 1]))
    messages = " ".join(w["message"] for w in warnings)
    assert "seed" in messages and "adv" in messages  # few seeds, and the degenerate row
    # results that predate the engine's warnings still get the few-seeds warning, and a status banner
    old = {"seeds": [0], "status": "partial", "counts": {"cells_error": 3}}
    levels = [(w["level"], w["message"].split(":")[0]) for w in assessment_warnings(old)]
    assert levels == [("warning", "This assessment is PARTIAL"), ("warning", "Only 1 seed(s)")]
    assert assessment_warnings({"seeds": [0, 1, 2], "status": "failed"})[0]["level"] == "error"


def test_status_marks_render_without_an_emoji_font() -> None:
    """Every mark the dashboard puts before a status is in DejaVu Sans (no emoji font needed)."""
    from fontTools.ttLib import TTFont  # third-party, only this test reads a font

    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not font.is_file():
        pytest.skip("fonts-dejavu-core is not installed (make system installs it)")
    covered = TTFont(font).getBestCmap()
    labels = [*STATUS_ICONS.values(), *VERDICT_LABELS.values(), *ROW_STATUS_LABELS.values(), *DIRECTION_LABELS.values()]
    missing = sorted({ch for label in labels for ch in label if not ch.isascii() and ord(ch) not in covered})
    assert not missing, f"marks that need an emoji font: {missing}"


def test_difference_of_two_runs_changes_is_a_welch_interval() -> None:

    a = {"mean": 2.0, "se": 0.5, "n": 3}
    b = {"mean": 5.0, "se": 0.5, "n": 3}
    diff, low, high, p = difference_of_changes(a, b)  # type: ignore[misc]
    assert diff == 3.0 and low is not None and high is not None and p is not None
    # equal variances and sizes: Welch's df = 4, the same test scipy runs on samples with these moments
    half = stats.t.ppf(0.975, 4) * (0.5**2 + 0.5**2) ** 0.5
    assert (low, high) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))
    assert p == pytest.approx(2 * stats.t.sf(3.0 / (0.5**2 + 0.5**2) ** 0.5, 4)) and p < 0.05
    assert difference_of_changes({"mean": 1.0, "se": None, "n": 1}, b) == (4.0, None, None, None)
    assert difference_of_changes(None, b) is None
    checks_a = [{"id": "mi", "row": "dp", "status": "pass"}, {"id": "ev", "row": "adv", "status": "fail"}]
    checks_b = [{"id": "mi", "row": "dp", "status": "fail"}, {"id": "ev", "row": "adv", "status": "fail"}]
    assert changed_verdicts({"checks": checks_a}, {"checks": checks_b}) == [
        {"check": "mi", "row": "dp", "A": "✔ pass", "B": "✘ fail"}
    ]


def test_label_column_is_guessed_from_the_data() -> None:

    rng = np.random.default_rng(0)
    loans = pd.DataFrame(
        {
            "applicant_id": np.arange(300),
            "income": rng.normal(50_000, 15_000, 300).round(2),  # a continuous measure, not a label
            "region": rng.choice(["north", "south", "east"], 300),
            "approved": rng.integers(0, 2, 300),
            "notes_len": rng.integers(0, 500, 300),
        }
    )
    preview = preview_file("loans.csv", loans.to_csv(index=False).encode())
    assert guess_label(preview.columns, preview.distinct, preview.n_rows) == "approved"
    # census-like: the binary income class is the label when it is the binary column
    census = pd.DataFrame({"age": rng.integers(17, 90, 300), "income": rng.choice([">50K", "<=50K"], 300)})
    preview = preview_file("adult.csv", census.to_csv(index=False).encode())
    assert guess_label(preview.columns, preview.distinct, preview.n_rows) == "income"
    # a conventional name wins; a frame with no label-like column falls back to its last column
    assert guess_label(["x1", "Outcome", "x2"], {"x1": 300, "Outcome": 300, "x2": 2}, 300) == "Outcome"
    assert guess_label(["a", "b"], {"a": 300, "b": 299}, 300) == "b"
