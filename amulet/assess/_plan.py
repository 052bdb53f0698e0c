"""The plan: an assessment spec expanded into independent units of work with stable keys.

A plan lists one *training* per (row, seed) and one *cell* per (row, risk column, seed). Keys are derived
from everything that determines the unit's result (data, model, training config, defense stack and its
parameters, attack and its parameters, seed), never from run order or time, so the worker can fan units
out, redo any one of them, and a changed policy or title re-uses every result.

Example:
    >>> from amulet.assess import load_spec, plan_assessment
    >>> spec = load_spec({"dataset": {"name": "census"}, "risks": [{"risk": "evasion"}], "seeds": [0, 1]})
    >>> plan = plan_assessment(spec)
    >>> len(plan.trainings), len(plan.cells)
    (2, 2)
    >>> plan.cells[0].key == plan_assessment(spec).cells[0].key
    True
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from amulet import registry
from amulet.assess._spec import BASELINE, AssessmentSpec, expand_row, load_spec
from amulet.recipes import Recipe

__all__ = ["AssessmentPlan", "PlannedCell", "PlannedColumn", "PlannedRow", "PlannedTraining", "plan_assessment"]


def _digest(payload: Any, n: int = 12) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


class PlannedRow(BaseModel):
    """A row of the matrix: the baseline or one concrete defense stack."""

    model_config = ConfigDict(frozen=True)

    name: str
    stack: list[dict[str, Any]] = Field(default_factory=list, description="[{'defense', 'params'}] as given.")
    targets: list[str] = Field(default_factory=list, description="Risk keys the stack's defenses target.")

    @property
    def is_baseline(self) -> bool:
        """True for the undefended row."""
        return not self.stack


class PlannedColumn(BaseModel):
    """A column of the matrix: a risk measured by one attack."""

    model_config = ConfigDict(frozen=True)

    risk: str
    attack: str
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """``risk`` or ``risk (attack)``."""
        return f"{self.risk} ({self.attack})"


class PlannedTraining(BaseModel):
    """Training (or importing) the model of one row for one seed."""

    model_config = ConfigDict(frozen=True)

    key: str
    row: str
    seed: int


class PlannedCell(BaseModel):
    """Measuring one risk column on the model of one row and seed."""

    model_config = ConfigDict(frozen=True)

    key: str
    row: str
    risk: str
    attack: str
    seed: int
    training_key: str
    intended: bool


class AssessmentPlan(BaseModel):
    """Every training and cell of an assessment (cheap to build; nothing is trained)."""

    model_config = ConfigDict(frozen=True)

    spec: AssessmentSpec
    rows: list[PlannedRow]
    columns: list[PlannedColumn]
    trainings: list[PlannedTraining]
    cells: list[PlannedCell]

    def row(self, name: str) -> PlannedRow:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"No row {name!r} in this plan; rows: {[r.name for r in self.rows]}.")

    def column(self, risk: str, attack: str) -> PlannedColumn:
        """The column of ``risk`` measured by ``attack``."""
        for column in self.columns:
            if column.risk == risk and column.attack == attack:
                return column
        raise KeyError(f"No column ({risk!r}, {attack!r}) in this plan.")

    def training(self, key: str) -> PlannedTraining:
        """The training with this key (KeyError naming the key otherwise)."""
        for training in self.trainings:
            if training.key == key:
                return training
        raise KeyError(f"No training {key!r} in this plan.")

    def cell(self, key: str) -> PlannedCell:
        """The cell with this key (KeyError naming the key otherwise)."""
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"No cell {key!r} in this plan.")

    def recipe(self, row: str):
        """The :class:`~amulet.recipes.Recipe` that trains ``row``'s model."""
        planned = self.row(row)
        stages = []
        for entry in planned.stack:
            info = registry.get_defense(entry["defense"])
            stages.append(info.make_stage(info.params(**entry["params"])))
        return Recipe(self.spec.training, stages, name=planned.name if stages else "baseline")


def plan_assessment(spec: AssessmentSpec | dict[str, Any] | str) -> AssessmentPlan:
    """Expand ``spec`` into rows, columns, trainings and cells with stable keys (no training happens).

    Args:
        spec: An :class:`AssessmentSpec` or anything :func:`load_spec` accepts.

    Returns:
        The :class:`AssessmentPlan`. Rows: the baseline first, then each defense row (list-valued
        parameters expanded); columns in spec order; cells ordered row-major, then by seed.
    """
    spec = load_spec(spec)
    rows = [PlannedRow(name=BASELINE)]
    for spec_row in spec.defenses:
        for expanded in expand_row(spec_row):
            targets = sorted({t for e in expanded["stack"] for t in registry.get_defense(e["defense"]).targets})
            rows.append(PlannedRow(name=expanded["name"], stack=expanded["stack"], targets=targets))
    columns = []
    for entry in spec.risks:
        attack = entry.attack or registry.attacks(entry.risk)[0].key
        columns.append(PlannedColumn(risk=entry.risk, attack=attack, params=dict(entry.params)))

    # What every model depends on besides its stack and seed.
    model_basis = {
        "dataset": spec.dataset.model_dump(mode="json"),
        "model": spec.model.model_dump(mode="json"),
        "training": spec.training.model_dump(mode="json"),
    }
    trainings: list[PlannedTraining] = []
    training_keys: dict[tuple[str, int], str] = {}
    for row in rows:
        for seed in spec.seeds:
            digest = _digest({**model_basis, "stack": row.stack, "seed": seed})
            key = f"t.{_slug(row.name)}.s{seed}.{digest}"
            training_keys[(row.name, seed)] = key
            trainings.append(PlannedTraining(key=key, row=row.name, seed=seed))
    cells: list[PlannedCell] = []
    for row in rows:
        for column in columns:
            for seed in spec.seeds:
                training_key = training_keys[(row.name, seed)]
                digest = _digest(
                    {"training": training_key, "risk": column.risk, "attack": column.attack, "params": column.params}
                )
                cells.append(
                    PlannedCell(
                        key=f"c.{_slug(row.name)}.{column.risk}.{column.attack}.s{seed}.{digest}",
                        row=row.name,
                        risk=column.risk,
                        attack=column.attack,
                        seed=seed,
                        training_key=training_key,
                        intended=column.risk in row.targets,
                    )
                )
    return AssessmentPlan(spec=spec, rows=rows, columns=columns, trainings=trainings, cells=cells)
