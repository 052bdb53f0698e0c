"""Finishing an assessment (a job): aggregate its cells, render the reports, and decide how it ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.storage import ArtifactStore, file_sha256
from backend.models import utcnow
from worker.plans import load_plan
from worker.progress import TRANSIENT_ERRORS

__all__ = ["Outcome", "final_outcome", "finalize"]

logger = logging.getLogger("amulet.worker")


def _cell_result(plan: Any, row: Any) -> Any:
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.assess import CellResult

    if row.result:
        try:
            return CellResult.model_validate(row.result)
        except ValueError:
            pass
    planned = plan.cell(row.key)
    return CellResult.model_validate(
        {
            "key": row.key,
            "row": planned.row,
            "risk": planned.risk,
            "attack": planned.attack,
            "seed": planned.seed,
            "status": "error" if row.status not in ("ok", "not_run") else row.status,
            "metrics": {},
            "reason": row.reason or "no result recorded",
            "seconds": row.seconds or 0.0,
        }
    )


def finalize(settings: Settings, assessment_id: str) -> bool:
    """Aggregate the cells and render the reports, once (an atomic claim); True when this call did it."""
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.assess import aggregate_results, render_reports

    loaded = load_plan(settings, assessment_id)
    if loaded is None:
        return False
    plan = loaded[1]
    stale_before = utcnow() - timedelta(seconds=settings.task_visibility_timeout)
    with session_scope(settings) as session:
        if crud.pending_cell_keys(session, assessment_id=assessment_id):
            return False
        if not crud.claim_finalize(session, assessment_id=assessment_id, stale_before=stale_before):
            return False
        crud.add_event(
            session, assessment_id=assessment_id, kind="finalizing", message="aggregating and rendering reports"
        )
    try:
        with session_scope(settings) as session:
            cells = [_cell_result(plan, row) for row in crud.list_cells(session, assessment_id=assessment_id)]
        results = aggregate_results(plan, cells)
        out_dir = ArtifactStore.from_settings(settings).report_dir(assessment_id)
        paths = render_reports(results, out_dir)
        exit_code = int(results.exit_code)
    except TRANSIENT_ERRORS:
        with session_scope(settings) as session:  # let a retry claim it again
            crud.release_finalize(session, assessment_id=assessment_id)
        raise
    except Exception as exc:  # recorded as the assessment's error
        logger.exception("finalizing assessment %s failed", assessment_id)
        with session_scope(settings) as session:
            crud.finish_assessment(
                session, assessment_id=assessment_id, status="failed", exit_code=2, error=f"{type(exc).__name__}: {exc}"
            )
        return True
    with session_scope(settings) as session:
        for fmt, path in paths.items():
            path = Path(path)
            if path.is_file():
                crud.record_report(
                    session,
                    assessment_id=assessment_id,
                    format=str(fmt),
                    path=str(path),
                    sha256=file_sha256(path),
                    size_bytes=path.stat().st_size,
                )
        counts = crud.cell_status_counts(session, assessment_id=assessment_id)
        outcome = final_outcome(
            plan,
            trainings=[(t.key, t.status, t.error) for t in crud.list_trainings(session, assessment_id=assessment_id)],
            cells=[(c.key, c.row, c.status, c.reason) for c in crud.list_cells(session, assessment_id=assessment_id)],
            engine_status=getattr(results, "status", None),
            engine_exit_code=exit_code,
        )
        warnings = [w.model_dump(mode="json") if hasattr(w, "model_dump") else w for w in _warnings(results)]
        crud.finish_assessment(
            session,
            assessment_id=assessment_id,
            status=outcome.status,
            exit_code=outcome.exit_code,
            error=outcome.error,
            summary={
                "exit_code": outcome.exit_code,
                "cells": counts,
                "reports": sorted(str(f) for f in paths),
                "engine_status": getattr(results, "status", None),
                "warnings": warnings,
            },
        )
    return True


def _warnings(results: Any) -> list[Any]:
    """The results' assessment-level warnings (results schema 1.1), or none for an older engine."""
    return list(getattr(results, "warnings", None) or [])


@dataclass(frozen=True)
class Outcome:
    """How an assessment ended: ``status`` (succeeded, partial or failed), its exit code and the error text."""

    status: str
    exit_code: int
    error: str | None


#: The engine's results status -> the service's assessment status.
_ENGINE_STATUS = {"complete": "succeeded", "partial": "partial", "failed": "failed"}
_SEVERITY = {"succeeded": 0, "partial": 1, "failed": 2}


def final_outcome(
    plan: Any,
    *,
    trainings: list[tuple[str, str, str | None]],
    cells: list[tuple[str, str, str, str | None]],
    engine_status: str | None = None,
    engine_exit_code: int = 0,
) -> Outcome:
    """The assessment's final status from its trainings and cells (and the engine's own status when given).

    ``failed``: the baseline could not be trained for any seed, its cells all errored, or no cell measured
    anything (none ``ok``); ``partial``: any training or cell errored; ``succeeded`` otherwise. The worse of
    this and the engine's results status wins. Exit codes follow ``amulet assess``: a failed assessment is 2
    (error); a partial one keeps the engine's 1 (a check failed) or 2, never 0 or 3, since something errored.

    Args:
        plan: The assessment plan (which rows are the baseline).
        trainings: ``(key, status, error)`` of every training row.
        cells: ``(key, row, status, reason)`` of every cell row.
        engine_status: ``AssessmentResults.status`` (``complete``/``partial``/``failed``), if the engine has it.
        engine_exit_code: ``AssessmentResults.exit_code``.
    """
    baseline_rows = {r.name for r in plan.rows if r.is_baseline}
    baseline_trainings = [t for t in plan.trainings if t.row in baseline_rows]
    failed_trainings = [(key, error) for key, status, error in trainings if status == "error"]
    failed_keys = {key for key, _ in failed_trainings}
    errored = [(key, reason) for key, _row, status, reason in cells if status == "error"]
    n_ok = sum(status == "ok" for _key, _row, status, _reason in cells)
    baseline_cells = [status for _key, row, status, _reason in cells if row in baseline_rows]
    problems: list[str] = []
    status = "succeeded"
    if baseline_trainings and all(t.key in failed_keys for t in baseline_trainings):
        status = "failed"
        problems.append("the baseline model could not be trained for any seed")
    elif baseline_cells and all(s == "error" for s in baseline_cells):
        status = "failed"
        problems.append("every baseline cell errored, so no change against the baseline can be measured")
    if cells and n_ok == 0:
        status = "failed"
        problems.append("no cell could be measured")
    if failed_trainings or errored:
        if status == "succeeded":
            status = "partial"
        if failed_trainings:
            problems.append(f"{len(failed_trainings)} of {len(trainings)} trainings failed")
        if errored:
            problems.append(f"{len(errored)} of {len(cells)} cells errored")
    mapped = _ENGINE_STATUS.get(str(engine_status), "succeeded") if engine_status else "succeeded"
    if _SEVERITY[mapped] > _SEVERITY[status]:
        status = mapped
        problems.append(f"the engine's results say {engine_status}")
    if status == "succeeded":
        return Outcome("succeeded", int(engine_exit_code), None)
    first = failed_trainings[0] if failed_trainings else errored[0] if errored else None
    if first is not None:
        problems.append(f"first error: {'training' if failed_trainings else 'cell'} {first[0]}: {first[1]}")
    exit_code = 2 if status == "failed" or engine_exit_code not in (1, 2) else int(engine_exit_code)
    return Outcome(status, exit_code, f"{status}: " + "; ".join(problems))
