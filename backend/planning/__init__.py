"""From a submitted spec to a planned assessment: resolve upload ids to artifact paths, validate, plan.

Clients reference their uploads by id (``{"dataset": {"id": ...}}``, ``{"model": {"id": ...}}``); server
paths in a submitted spec are refused, so no client can make the worker read a file of its choosing.
Validation is the engine's (:func:`amulet.assess.load_spec`); planning is cheap (no training).

The steps live in modules named after them: :mod:`~backend.planning.bounds` (the service's limits),
:mod:`~backend.planning.uploads` (ids to paths), :mod:`~backend.planning.preflight` (does the model fit the
data) and :mod:`~backend.planning.estimate` (how long it will take); :func:`plan_submission` runs them in order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from amulet.assess import SpecError, load_spec, plan_assessment
from backend.core.config import Settings, get_settings
from backend.intake import (
    IntakeError,
    check_planned_rows,
    setting_limit,
)
from backend.planning.bounds import MAX_LAYER_WIDTH, MAX_MODEL_PARAMETERS, check_bounds, check_cell_count
from backend.planning.estimate import (
    HISTORY_ASSESSMENTS,
    MODEL_CELL_SECONDS,
    MODEL_CELL_SECONDS_OTHER,
    MODEL_REFERENCE,
    MODEL_TRAINING_SECONDS,
    MODEL_UNIT_OVERHEAD_SECONDS,
    estimate_cost,
    training_kind,
    workload_digest,
)
from backend.planning.preflight import PreflightInfo, preflight
from backend.planning.uploads import UploadedModel, find_uploads, resolve_spec

__all__ = [
    "HISTORY_ASSESSMENTS",
    "MAX_LAYER_WIDTH",
    "MAX_MODEL_PARAMETERS",
    "MODEL_CELL_SECONDS",
    "MODEL_CELL_SECONDS_OTHER",
    "MODEL_REFERENCE",
    "MODEL_TRAINING_SECONDS",
    "MODEL_UNIT_OVERHEAD_SECONDS",
    "PlannedAssessment",
    "PreflightInfo",
    "UploadedModel",
    "check_bounds",
    "estimate_cost",
    "plan_submission",
    "preflight",
    "resolve_spec",
    "training_kind",
    "workload_digest",
]


@dataclass
class PlannedAssessment:
    """A validated, resolved spec, the rows the database needs and the estimate of its cost."""

    name: str
    resolved_spec: dict[str, Any]
    training_keys: list[str]
    cells: list[dict[str, Any]]
    estimate: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan_submission(
    session: Session,
    *,
    project_id: str,
    spec: dict[str, Any],
    name: str | None,
    settings: Settings | None = None,
) -> PlannedAssessment:
    """Bound (:func:`check_bounds`), resolve, validate (422 naming the field), pre-flight (:func:`preflight`)
    and plan a submitted spec; ``settings`` (default: the process settings) hold the bounds."""
    settings = settings or get_settings()
    if name is not None and len(name) > settings.max_name_length:
        raise IntakeError(
            "name",
            f"name has {len(name):,} characters, more than "
            f"{setting_limit(settings.max_name_length, 'max_name_length')}. "
            "Use a shorter name.",
        )
    check_bounds(spec, settings)
    resolved = resolve_spec(session, project_id=project_id, spec=spec)
    try:
        loaded = load_spec(resolved)
    except SpecError as exc:
        first = exc.errors[0]["path"] if exc.errors else ""
        raise IntakeError(f"spec.{first}".rstrip("."), str(exc)) from exc
    except ValueError as exc:
        raise IntakeError("spec", str(exc)) from exc
    dataset_name, uploaded = find_uploads(session, project_id=project_id, spec=spec)
    info = preflight(loaded, dataset_name=dataset_name, uploaded=uploaded, settings=settings)
    plan = plan_assessment(loaded)
    check_cell_count(len(plan.cells), settings)  # the planner's own count (risks may expand to several attacks)
    check_planned_rows(row.name for row in plan.rows)
    cells = [{"key": c.key, "row": c.row, "risk": c.risk, "attack": c.attack, "seed": c.seed} for c in plan.cells]
    resolved_spec = loaded.model_dump(mode="json")
    training_keys = [t.key for t in plan.trainings]
    return PlannedAssessment(
        name=name or loaded.name,
        resolved_spec=resolved_spec,
        training_keys=training_keys,
        cells=cells,
        estimate=estimate_cost(
            session,
            project_id=project_id,
            resolved_spec=resolved_spec,
            training_keys=training_keys,
            cells=cells,
            info=info,
        ),
    )
