"""``amulet assess`` exit codes (0 pass, 1 fail, 2 error, 3 could not run), ``spec-schema``, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from amulet.cli import app

from .conftest import tiny_spec

pytestmark = pytest.mark.usefixtures("test_registrations")

RISKS = [
    {"risk": "membership_inference", "attack": "t_loss_threshold"},
    {"risk": "data_reconstruction", "attack": "t_image_only"},
]


def _assess(tmp_path: Path, cache: Path, spec: dict, *extra: str):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["assess", str(path), "--out", str(out), "--cache-dir", str(cache), "--device", "cpu", "-q", *extra]
    )
    return result, out


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ([{"metric": "membership_inference.auc", "op": "<=", "threshold": 1.0}], 0),
        ([{"metric": "membership_inference.auc", "op": ">", "threshold": 1.0}], 1),
        ([{"metric": "data_reconstruction.mse", "op": "<=", "threshold": 1.0}], 3),
    ],
    ids=["pass", "fail", "could-not-run"],
)
def test_exit_codes_follow_the_policy(tmp_path: Path, assess_cache: Path, policy: list, code: int):
    spec = tiny_spec(risks=RISKS, policy=policy, seeds=[0, 1])
    result, out = _assess(tmp_path, assess_cache, spec, "--format", "json,junit")
    assert result.exit_code == code, result.output
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "manifest.json", "manifest.json.sig", "results.json"]
    assert json.loads((out / "results.json").read_text())["exit_code"] == code


def test_an_invalid_spec_exits_2_naming_the_field(tmp_path: Path, assess_cache: Path):
    spec = tiny_spec(risks=[{"risk": "evasion", "params": {"epsilon": -1}}])
    result, out = _assess(tmp_path, assess_cache, spec)
    assert result.exit_code == 2
    assert "risks[0].params.epsilon" in result.output
    assert not out.exists()


def test_bad_data_exits_2_naming_the_column(tmp_path: Path, assess_cache: Path):
    csv = tmp_path / "data.csv"
    csv.write_text("age,hours\n" + "".join(f"{20 + i % 30},{30 + i % 20}\n" for i in range(60)))
    spec = tiny_spec(risks=RISKS[:1], seeds=[0])
    spec["dataset"] = {"path": str(csv), "label": "income"}
    result, _ = _assess(tmp_path, assess_cache, spec)
    assert result.exit_code == 2
    assert "income" in result.output


def test_an_unknown_format_exits_2(tmp_path: Path, assess_cache: Path):
    result, _ = _assess(tmp_path, assess_cache, tiny_spec(risks=RISKS[:1]), "--format", "html,docx")
    assert result.exit_code == 2
    assert "docx" in result.output


def test_spec_schema_prints_json_schemas():
    runner = CliRunner()
    spec = json.loads(runner.invoke(app, ["spec-schema"]).output)
    assert spec["title"] == "Amulet assessment spec"
    results = json.loads(runner.invoke(app, ["spec-schema", "--results"]).output)
    assert results["title"] == "Amulet assessment results"
