"""The planner: one training per (row, seed), one cell per (row, column, seed), keys that depend only on
what determines each unit's result."""

from __future__ import annotations

import re

from amulet.assess import load_spec, plan_assessment

from .conftest import tiny_spec

BASE = tiny_spec(
    defenses=[{"defense": "adversarial_training", "params": {"epsilon": [0.05, 0.1]}}, {"defense": "outlier_removal"}],
    risks=[{"risk": "evasion", "params": {"iterations": 3}}, {"risk": "discriminatory_behavior"}],
    policy=[{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 50}],
    seeds=[0, 1, 2],
)


def _keys(spec: dict) -> dict[str, set[str]]:
    plan = plan_assessment(load_spec(spec))
    return {"trainings": {t.key for t in plan.trainings}, "cells": {c.key for c in plan.cells}}


def test_counts_order_and_intended_flags():
    plan = plan_assessment(BASE)
    assert [r.name for r in plan.rows] == [
        "baseline", "adversarial_training (epsilon=0.05)", "adversarial_training (epsilon=0.1)", "outlier_removal",
    ]  # fmt: skip
    assert len(plan.trainings) == 4 * 3
    assert len(plan.cells) == 4 * 2 * 3
    assert [c.label for c in plan.columns] == ["evasion (pgd)", "discriminatory_behavior (subgroup_metrics)"]
    intended = {(c.row, c.risk) for c in plan.cells if c.intended}
    assert intended == {
        ("adversarial_training (epsilon=0.05)", "evasion"),
        ("adversarial_training (epsilon=0.1)", "evasion"),
    }
    for cell in plan.cells:
        assert plan.training(cell.training_key).row == cell.row
        assert plan.training(cell.training_key).seed == cell.seed
    assert all(re.fullmatch(r"[a-z0-9._-]+", k) for k in _keys(BASE)["cells"] | _keys(BASE)["trainings"])
    assert len(_keys(BASE)["cells"]) == len(plan.cells)


def test_keys_are_stable_and_ignore_presentation():
    same = _keys(BASE)
    assert _keys(BASE) == same
    cosmetic = dict(BASE, name="other title", description="x", policy=[])
    assert _keys(cosmetic) == same


def test_keys_change_exactly_where_the_work_changes():
    base = plan_assessment(BASE)
    by_row = {}
    for t in base.trainings:
        by_row.setdefault(t.row, set()).add(t.key)

    # A defense parameter changes only that row's trainings and cells.
    spec = tiny_spec(**{k: v for k, v in BASE.items() if k in ("defenses", "risks", "policy", "seeds")})
    spec["defenses"][1]["params"] = {"percent": 20}
    changed = plan_assessment(spec)
    new_rows = {}
    for t in changed.trainings:
        new_rows.setdefault(t.row, set()).add(t.key)
    assert new_rows["baseline"] == by_row["baseline"]
    assert new_rows["adversarial_training (epsilon=0.05)"] == by_row["adversarial_training (epsilon=0.05)"]
    assert not new_rows["outlier_removal"] & by_row["outlier_removal"]

    # An attack parameter changes only that column's cells, no training.
    spec = tiny_spec(**{k: v for k, v in BASE.items() if k in ("defenses", "risks", "policy", "seeds")})
    spec["risks"][0]["params"] = {"iterations": 4}
    changed = plan_assessment(spec)
    assert {t.key for t in changed.trainings} == {t.key for t in base.trainings}
    old_cells = {(c.row, c.risk, c.seed): c.key for c in base.cells}
    for c in changed.cells:
        assert (c.key == old_cells[(c.row, c.risk, c.seed)]) == (c.risk != "evasion")

    # The training config changes every model.
    spec = dict(BASE, training={"epochs": 4, "batch_size": 128, "lr": 0.01})
    assert not _keys(spec)["trainings"] & _keys(BASE)["trainings"]
    # Dropping a seed drops exactly its units.
    fewer = _keys(dict(BASE, seeds=[0, 1]))
    assert fewer["cells"] < _keys(BASE)["cells"]
