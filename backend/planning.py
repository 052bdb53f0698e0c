"""From a submitted spec to a planned assessment: resolve upload ids to artifact paths, validate, plan.

Clients reference their uploads by id (``{"dataset": {"id": ...}}``, ``{"model": {"id": ...}}``); server
paths in a submitted spec are refused, so no client can make the worker read a file of its choosing.
Validation is the engine's (:func:`amulet.assess.load_spec`); planning is cheap (no training).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend import crud
from backend.intake import IntakeError

__all__ = ["PlannedAssessment", "plan_submission", "resolve_spec"]

#: amulet.io architecture names whose assessment-spec name differs.
_SPEC_ARCHITECTURES = {"simplecnn": "cnn"}


@dataclass
class PlannedAssessment:
    """A validated, resolved spec and the rows the database needs."""

    name: str
    resolved_spec: dict[str, Any]
    training_keys: list[str]
    cells: list[dict[str, Any]]


def resolve_spec(session: Session, *, project_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Replace upload ids by artifact paths (scoped to ``project_id``); refuse client-supplied paths."""
    resolved = copy.deepcopy(spec)
    dataset = resolved.get("dataset")
    if isinstance(dataset, dict):
        if "path" in dataset:
            raise IntakeError(
                "spec.dataset.path",
                "Server paths are not accepted. Upload the file with POST /datasets and reference it as "
                '{"dataset": {"id": "<dataset id>"}}.',
            )
        dataset_id = dataset.pop("id", None)
        if dataset_id is not None:
            row = crud.get_dataset(session, project_id=project_id, dataset_id=str(dataset_id))
            if row is None:
                raise IntakeError(
                    "spec.dataset.id", f"No dataset with id {dataset_id!r} in this project (GET /datasets)."
                )
            for key in ("label", "sensitive"):
                if key in dataset:
                    raise IntakeError(f"spec.dataset.{key}", f"'{key}' is fixed at upload; remove it from the spec.")
            dataset["path"] = row.path
            if row.format != "npz":
                dataset["label"] = row.label
                dataset["sensitive"] = list(row.sensitive or [])
    model = resolved.get("model")
    if isinstance(model, dict):
        if "weights" in model:
            raise IntakeError(
                "spec.model.weights",
                "Server paths are not accepted. Upload the model with POST /models and reference it as "
                '{"model": {"id": "<model id>"}}.',
            )
        model_id = model.pop("id", None)
        if model_id is not None:
            row_m = crud.get_model(session, project_id=project_id, model_id=str(model_id))
            if row_m is None:
                raise IntakeError("spec.model.id", f"No model with id {model_id!r} in this project (GET /models).")
            architecture = str(row_m.spec.get("architecture", ""))
            model["architecture"] = _SPEC_ARCHITECTURES.get(architecture, architecture)
            model["config"] = dict(row_m.spec.get("config") or {})
            model["weights"] = row_m.weights_path
    return resolved


def plan_submission(session: Session, *, project_id: str, spec: dict[str, Any], name: str | None) -> PlannedAssessment:
    """Resolve, validate (422 naming the field path) and plan a submitted spec."""
    from amulet.assess import SpecError, load_spec, plan_assessment

    resolved = resolve_spec(session, project_id=project_id, spec=spec)
    try:
        loaded = load_spec(resolved)
    except SpecError as exc:
        first = exc.errors[0]["path"] if exc.errors else ""
        raise IntakeError(f"spec.{first}".rstrip("."), str(exc)) from exc
    except ValueError as exc:
        raise IntakeError("spec", str(exc)) from exc
    plan = plan_assessment(loaded)
    cells = [{"key": c.key, "row": c.row, "risk": c.risk, "attack": c.attack, "seed": c.seed} for c in plan.cells]
    return PlannedAssessment(
        name=name or loaded.name,
        resolved_spec=loaded.model_dump(mode="json"),
        training_keys=[t.key for t in plan.trainings],
        cells=cells,
    )
