"""What the worker's tasks do: re-fetch by id, call the interaction engine, write SQL idempotently.

Every function takes ids (never ORM objects) and reads what it needs from SQL. Cell and training rows are
upserted by their unique keys and a cell that is already finished is skipped, so a redelivered task (a
worker killed mid-task, a duplicate from a recovery sweep) never adds a row or redoes finished work.
Progress goes to the ``events`` table through :class:`SqlProgress`, so the API never asks the broker.
An assessment of an uploaded exported model (``model.file``) re-validates the file before every training
and cell (:func:`check_uploaded_model`): the worker never trusts the API's earlier inspection.

The tasks run trainings, cells and the reports through :func:`supervised_training`,
:func:`supervised_cell` and :func:`supervised_finalize`: the same jobs in a child process that the worker
kills on cancellation or at the time limit (:mod:`worker.supervisor`), renewing the assessment's heartbeat
lease meanwhile. A cancelled assessment's unfinished trainings and cells read ``cancelled``.
:func:`resume_stalled` is the recovery sweep for assessments whose worker died mid-job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from amulet.exceptions import RunCancelledError
from amulet.progress import Progress, ProgressEvent
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.storage import ArtifactStore, file_sha256
from backend.models import ASSESSMENT_ACTIVE, utcnow

__all__ = [
    "TRANSIENT_ERRORS",
    "AssessmentCancelledError",
    "Outcome",
    "SqlProgress",
    "UploadedModelRefusedError",
    "check_uploaded_model",
    "claim_cell_dispatch",
    "final_outcome",
    "finalize",
    "recover_stale",
    "record_cell_error",
    "record_training_error",
    "resume_stalled",
    "run_one_cell",
    "run_one_training",
    "start",
    "supervised_cell",
    "supervised_finalize",
    "supervised_training",
]

logger = logging.getLogger("amulet.worker")

#: Errors worth a retry with backoff (the database or the broker blinked), as opposed to engine errors.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class AssessmentCancelledError(RunCancelledError):
    """The assessment was cancelled (or deleted) while a task ran; the engine lets it through (it is no
    cell's error) and the task marks what is left ``cancelled``."""


class SqlProgress(Progress):
    """Writes progress events to SQL: every start/finish, advances at most every ``interval`` seconds.

    Each write also reads the assessment's status and raises :class:`AssessmentCancelledError` once it is
    no longer active, which stops a running training or attack at its next progress report.
    """

    def __init__(self, settings: Settings, assessment_id: str, *, prefix: str = "", interval: float = 2.0) -> None:
        super().__init__()
        self.settings = settings
        self.assessment_id = assessment_id
        self.prefix = prefix
        self.interval = interval
        self._last: dict[str, float] = {}

    def emit(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.kind == "advance" and now - self._last.get(event.key, 0.0) < self.interval:
            return
        self._last[event.key] = now
        info = {k: v for k, v in event.info.items() if isinstance(v, (int, float, str, bool))}
        if event.eta is not None:
            info["eta"] = round(event.eta, 1)
        with session_scope(self.settings) as session:
            crud.add_event(
                session,
                assessment_id=self.assessment_id,
                kind=event.kind,
                key=f"{self.prefix}{event.key}",
                message=event.description,
                completed=event.completed,
                total=event.total,
                info=info,
            )
            status = crud.touch_assessment(session, assessment_id=self.assessment_id)
        if status not in ASSESSMENT_ACTIVE:
            raise AssessmentCancelledError(self.assessment_id)


@lru_cache(maxsize=32)
def _plan(assessment_id: str, spec_json: str) -> Any:
    import json

    from amulet.assess import plan_assessment

    return plan_assessment(json.loads(spec_json))


def _load_plan(settings: Settings, assessment_id: str) -> tuple[str, Any] | None:
    """(status, plan) of the assessment, or None when it is gone."""
    import json

    with session_scope(settings) as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        if row is None:
            return None
        status, spec_json = row.status, json.dumps(row.resolved_spec, sort_keys=True)
    return status, _plan(assessment_id, spec_json)


def _cache_dir(settings: Settings) -> Path:
    path = ArtifactStore.from_settings(settings).cache_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


class UploadedModelRefusedError(Exception):
    """The assessment's uploaded model file failed re-validation in the worker; nothing of it was loaded."""


#: (path, mtime, size) of uploaded model files that passed re-validation in this process.
_VALIDATED: set[tuple[str, int, int]] = set()


def check_uploaded_model(settings: Settings, assessment_id: str) -> None:
    """Re-validate the assessment's uploaded exported graph (``model.file``) before the engine loads it.

    The worker trusts nothing the API checked: the file is inspected again with
    ``amulet.io.inspect_model_file`` (no pickle payload runs, no custom operator, no external data outside
    its folder) and its SHA-256 must still be the one recorded at upload (a file swapped in the artifact
    store is refused). The engine's own loader validates once more when it loads.

    Raises:
        UploadedModelRefusedError: the file is missing, unsafe, malformed or changed since upload.
    """
    with session_scope(settings) as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        if row is None:
            return
        model = (row.resolved_spec or {}).get("model") or {}
        path = model.get("file") if isinstance(model, dict) else None
        if not path:
            return
        uploaded = crud.get_model_by_file(session, project_id=row.project_id, path=str(path))
        expected = uploaded.sha256 if uploaded is not None else None
    file = Path(str(path))
    try:
        stat = file.stat()
    except OSError as exc:
        raise UploadedModelRefusedError(f"the uploaded model file is missing from the artifact store: {exc}") from exc
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key in _VALIDATED:
        return
    from amulet.exceptions import ModelSpecError, UnsafeModelFileError
    from amulet.io import inspect_model_file

    try:
        info = inspect_model_file(file)
    except (UnsafeModelFileError, ModelSpecError) as exc:
        raise UploadedModelRefusedError(f"the uploaded model was refused before loading: {exc}") from exc
    if expected is None:
        raise UploadedModelRefusedError(
            "the model file is not an upload of this project (upload it with POST /models and reference its id)"
        )
    if info.sha256 != expected:
        raise UploadedModelRefusedError(
            f"the uploaded model file changed since upload (SHA-256 {info.sha256[:12]}, recorded "
            f"{expected[:12]}); upload it again"
        )
    _VALIDATED.add(key)


def start(settings: Settings, assessment_id: str) -> tuple[list[str], list[str]] | None:
    """Mark the assessment running; returns its unfinished (training keys, cell keys), None if inactive."""
    with session_scope(settings) as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        if row is None or row.status not in ASSESSMENT_ACTIVE:
            return None
        crud.mark_running(session, assessment_id=assessment_id)
        crud.add_event(session, assessment_id=assessment_id, kind="started", message="worker started the assessment")
        trainings = crud.pending_training_keys(session, assessment_id=assessment_id)
        cells = crud.pending_cell_keys(session, assessment_id=assessment_id)
        if trainings:  # the last of them to settle queues the cells (claim_cell_dispatch)
            crud.claim_cell_dispatch(session, assessment_id=assessment_id, reset=True)
    return trainings, cells


def claim_cell_dispatch(settings: Settings, assessment_id: str) -> bool:
    """True for exactly one caller once every training of the assessment has settled: it queues the cells."""
    with session_scope(settings) as session:
        return crud.claim_cell_dispatch(session, assessment_id=assessment_id)


def _mark_cancelled(settings: Settings, assessment_id: str) -> None:
    with session_scope(settings) as session:
        crud.cancel_remaining(session, assessment_id=assessment_id)


def run_one_training(settings: Settings, assessment_id: str, key: str) -> None:
    """Train (or fetch from the cache) one planned model; engine errors are recorded on the training row."""
    from amulet.assess import run_training
    from amulet.utils import configure_threads

    configure_threads()  # this process's share of the cores (AMULET_NUM_THREADS, set by `amulet worker`)

    loaded = _load_plan(settings, assessment_id)
    if loaded is None or loaded[0] not in ASSESSMENT_ACTIVE:
        return
    with session_scope(settings) as session:
        done = key not in crud.pending_training_keys(session, assessment_id=assessment_id)
        if done:
            return
        crud.upsert_training(session, assessment_id=assessment_id, key=key, status="running", attempt=True)
    started = time.monotonic()
    try:
        check_uploaded_model(settings, assessment_id)
    except UploadedModelRefusedError as exc:
        logger.error("training %s of assessment %s: %s", key, assessment_id, exc)
        record_training_error(settings, assessment_id, key, f"UploadedModelRefused: {exc}", 0.0)
        return
    try:
        run_training(
            loaded[1],
            key,
            cache_dir=_cache_dir(settings),
            device=settings.resolve_device(),
            progress=SqlProgress(settings, assessment_id, prefix=f"train/{key}/"),
        )
    except RunCancelledError:
        _mark_cancelled(settings, assessment_id)
        return
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # any engine failure is recorded, never lost
        logger.exception("training %s of assessment %s failed", key, assessment_id)
        record_training_error(settings, assessment_id, key, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        return
    with session_scope(settings) as session:
        crud.upsert_training(
            session, assessment_id=assessment_id, key=key, status="done", seconds=time.monotonic() - started
        )


def record_training_error(
    settings: Settings, assessment_id: str, key: str, message: str, seconds: float | None = None
) -> None:
    """Record a failed training (its cells then fail or retrain on their own)."""
    with session_scope(settings) as session:
        crud.upsert_training(
            session, assessment_id=assessment_id, key=key, status="error", error=message, seconds=seconds
        )
        crud.add_event(session, assessment_id=assessment_id, kind="error", key=f"train/{key}", message=message)


def run_one_cell(settings: Settings, assessment_id: str, key: str) -> bool:
    """Run one cell and upsert its row; returns True when no cell of the assessment is left to run."""
    from amulet.assess import run_cell
    from amulet.utils import configure_threads

    configure_threads()

    loaded = _load_plan(settings, assessment_id)
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
            cache_dir=_cache_dir(settings),
            device=settings.resolve_device(),
            progress=SqlProgress(settings, assessment_id, prefix=f"cell/{key}/"),
        )
    except RunCancelledError:
        _mark_cancelled(settings, assessment_id)
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


def _cell_result(plan: Any, row: Any) -> Any:
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
    from amulet.assess import aggregate_results, render_reports

    loaded = _load_plan(settings, assessment_id)
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


def recover_stale(settings: Settings) -> list[str]:
    """Re-queue active assessments whose tasks were lost (no heartbeat for a while); returns their ids.

    With the embedded SQLite broker, a task taken by a worker that was killed is never redelivered, and
    ``amulet serve`` runs one worker: every active assessment is resumed when it starts. With Redis, the
    broker redelivers unacknowledged tasks after the visibility timeout, so only assessments silent for
    longer than that are resumed. Stalled assessments (:func:`resume_stalled`) are resumed in both cases.
    Resuming is safe: finished trainings and cells are skipped.
    """
    from backend.core.queue import enqueue_assessment

    embedded = settings.resolved_broker_url.startswith("sqla+")
    silence = 0 if embedded else settings.task_visibility_timeout
    try:
        stalled = resume_stalled(settings)
        with session_scope(settings) as session:
            stale = crud.stale_assessments(session, stale_before=utcnow() - timedelta(seconds=silence))
            stale = [a for a in stale if a not in stalled]
            for assessment_id in stale:  # resumed now: no longer stalled, whatever its old lease says
                crud.end_lease(session, assessment_id=assessment_id)
    except Exception:  # a missing schema (never migrated) must not stop the worker
        logger.exception("could not look for interrupted assessments")
        return []
    for assessment_id in stale:
        logger.warning("resuming interrupted assessment %s", assessment_id)
        enqueue_assessment(settings, assessment_id)
    return stalled + stale


# ----------------------------------------------------------------------------------- supervised jobs, recovery
def supervised_training(settings: Settings, assessment_id: str, key: str) -> None:
    """:func:`run_one_training` in a child process the worker stops on cancellation or at the time limit.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    from worker import supervisor

    try:
        supervisor.run_supervised(
            settings, assessment_id, "worker.jobs:run_one_training", assessment_id, key, training_key=key
        )
    except RunCancelledError:
        _mark_cancelled(settings, assessment_id)
    except (supervisor.JobTimeoutError, supervisor.JobDiedError, supervisor.JobFailedError) as exc:
        logger.error("training %s of assessment %s: %s", key, assessment_id, exc)
        record_training_error(settings, assessment_id, key, str(exc))


def supervised_cell(settings: Settings, assessment_id: str, key: str) -> bool:
    """:func:`run_one_cell` in a child process the worker stops on cancellation or at the time limit;
    returns True when no cell of the assessment is left to run.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    from worker import supervisor

    try:
        call = "worker.jobs:run_one_cell"
        return bool(supervisor.run_supervised(settings, assessment_id, call, assessment_id, key, cell_key=key))
    except RunCancelledError:
        _mark_cancelled(settings, assessment_id)
        return False
    except (supervisor.JobTimeoutError, supervisor.JobDiedError, supervisor.JobFailedError) as exc:
        logger.error("cell %s of assessment %s: %s", key, assessment_id, exc)
        return record_cell_error(settings, assessment_id, key, str(exc))


def supervised_finalize(settings: Settings, assessment_id: str) -> None:
    """:func:`finalize` in a child process: reports that hang past the time limit fail the assessment.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    from worker import supervisor

    try:
        supervisor.run_supervised(settings, assessment_id, "worker.jobs:finalize", assessment_id)
    except RunCancelledError:
        return
    except (supervisor.JobTimeoutError, supervisor.JobDiedError, supervisor.JobFailedError) as exc:
        logger.error("finalizing assessment %s: %s", assessment_id, exc)
        with session_scope(settings) as session:
            crud.finish_assessment(
                session,
                assessment_id=assessment_id,
                status="failed",
                exit_code=2,
                error=f"the reports could not be made: {exc}",
            )


def resume_stalled(settings: Settings) -> list[str]:
    """The recovery sweep: re-queue active assessments whose worker died mid-job; returns their ids.

    Stalled: the heartbeat lease ran out, or a running training or cell has had no heartbeat for
    ``stall_after`` seconds. Their dead rows go back to ``pending`` (a dead finalizer's claim is released)
    and the assessment is queued again; finished work is skipped when it resumes. A worker runs this sweep
    when it starts and, while it runs jobs, every ``stall_after`` seconds.
    """
    from backend.core.queue import enqueue_assessment

    now = utcnow()
    with session_scope(settings) as session:
        stalled = crud.stalled_assessments(session, stale_before=now - timedelta(seconds=settings.stall_after))
        for assessment_id in stalled:
            crud.resume_stalled(
                session,
                assessment_id=assessment_id,
                stale_before=now - timedelta(seconds=settings.stall_after / 2),
                reason=f"resumed: its worker sent no heartbeat for {settings.stall_after:g} s (it died)",
            )
    for assessment_id in stalled:
        logger.warning("resuming stalled assessment %s (no heartbeat for %g s)", assessment_id, settings.stall_after)
        enqueue_assessment(settings, assessment_id)
    return stalled


def cells_left(settings: Settings, assessment_id: str) -> list[str]:
    """Keys of the cells still to run."""
    with session_scope(settings) as session:
        return crud.pending_cell_keys(session, assessment_id=assessment_id)
