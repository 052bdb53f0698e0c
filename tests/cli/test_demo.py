"""``amulet demo``: a real census run whose printed table says what the engine measured."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from amulet.cli import app


def _percent(output: str, metric: str) -> float:
    match = re.search(rf"│ {re.escape(metric)}\s*│\s*([0-9.]+)%", output)
    assert match, f"no {metric!r} row in:\n{output}"
    return float(match.group(1))


def test_demo_trains_census_above_the_majority_rate_and_pgd_lowers_its_accuracy() -> None:
    args = ["demo", "--epochs", "1", "--epsilon", "0.1", "--seed", "7"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "census (UCI Adult)" in result.output and "device cpu" in result.output
    clean = _percent(result.output, "clean accuracy")
    robust = _percent(result.output, "robust accuracy (PGD, L-inf eps=0.1)")
    majority = _percent(result.output, "majority-class rate")
    # Measured with 2 epochs (seed 7): 84.1 % clean, 28.7 % under PGD at epsilon 0.1 on the [0, 1]-scaled
    # features, 75.9 % majority rate; one epoch already clears these margins.
    assert 74.0 < majority < 78.0
    assert clean > majority + 4.0
    assert robust < clean - 20.0
