"""Running one defense x risk x seed cell of an assessment (a job), and recording a cell that failed."""

from __future__ import annotations

import logging
import time
from typing import Any

from amulet.exceptions import RunCancelledError
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.models import ASSESSMENT_ACTIVE
from worker.plans import UploadedModelRefusedError, cache_dir, check_uploaded_model, load_plan, mark_cancelled
from worker.progress import TRANSIENT_ERRORS, SqlProgress

__all__ = ["record_cell_error", "run_one_cell"]

logger = logging.getLogger("amulet.worker")


def run_one_cell(settings: Settings, assessment_id: str, key: str) -> bool:
    """Run one cell and upsert its row; returns True when no cell of the assessment is left to run."""
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.assess import run_cell
    from amulet.utils import configure_threads

    configure_threads()

    loaded = load_plan(settings, assessment_id)
    if loaded is None or loaded[0] not in ASSESSMENT_ACTIVE:
        return False
    plan = loaded[1]
    planned = plan.cell(key)
    ids = {"row": planned.row, "risk": planned.risk, "attack": planned.attack, "seed": planned.seed}
    with session_scope(settings) as session:
        if key not in crud.pending_cell_keys(session, assessment_id=assessment_id):
            return not crud.pending_cell_keys(session, assessment_id=assessment_id)
        crud.upsert_cell(session, assessment_id=assessment_id, key=key, status="running", attempt=True, **ids)
    started = time.monotonic()
    try:
        check_uploaded_model(settings, assessment_id)
    except UploadedModelRefusedError as exc:
        logger.error("cell %s of assessment %s: %s", key, assessment_id, exc)
        return record_cell_error(settings, assessment_id, key, f"UploadedModelRefused: {exc}", 0.0)
    try:
        result = run_cell(
            plan,
            key,
            cache_dir=cache_dir(settings),
            device=settings.resolve_device(),
            progress=SqlProgress(settings, assessment_id, prefix=f"cell/{key}/"),
        )
    except RunCancelledError:
        mark_cancelled(settings, assessment_id)
        return False
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # recorded on the cell; the assessment goes on
        logger.exception("cell %s of assessment %s failed", key, assessment_id)
        return record_cell_error(
            settings, assessment_id, key, f"{type(exc).__name__}: {exc}", time.monotonic() - started
        )
    payload = result.model_dump(mode="json")
    with session_scope(settings) as session:
        crud.upsert_cell(
            session,
            assessment_id=assessment_id,
            key=key,
            status=result.status,
            metrics={k: float(v) for k, v in (result.metrics or {}).items()},
            reason=result.reason,
            seconds=result.seconds,
            result=payload,
            **ids,
        )
        crud.add_event(session, assessment_id=assessment_id, kind="cell", key=key, message=result.status)
        return not crud.pending_cell_keys(session, assessment_id=assessment_id)


def record_cell_error(
    settings: Settings, assessment_id: str, key: str, message: str, seconds: float | None = None
) -> bool:
    """Record a cell that failed outside the engine's own error handling; returns True when none is left."""
    with session_scope(settings) as session:
        row = next((c for c in crud.list_cells(session, assessment_id=assessment_id) if c.key == key), None)
        ids: dict[str, Any] = {}
        if row is not None:
            ids = {"row": row.row, "risk": row.risk, "attack": row.attack, "seed": row.seed}
        result = {"key": key, **ids, "status": "error", "metrics": {}, "reason": message, "seconds": seconds or 0.0}
        crud.upsert_cell(
            session,
            assessment_id=assessment_id,
            key=key,
            status="error",
            reason=message,
            seconds=seconds,
            result=result,
            **ids,
        )
        crud.add_event(session, assessment_id=assessment_id, kind="error", key=key, message=message)
        return not crud.pending_cell_keys(session, assessment_id=assessment_id)
