"""What the worker's tasks do: re-fetch by id, call the interaction engine, write SQL idempotently.

The tasks' one front door. Every function takes ids (never ORM objects) and reads what it needs from SQL.
Cell and training rows are upserted by their unique keys and a cell that is already finished is skipped, so
a redelivered task (a worker killed mid-task, a duplicate from a recovery sweep) never adds a row or redoes
finished work. The jobs live in modules named after what they do: :mod:`worker.trainings`,
:mod:`worker.cells`, :mod:`worker.finalize`, :mod:`worker.recovery`; what they share in
:mod:`worker.plans` (plan, cache, uploaded-model check) and :mod:`worker.progress` (SQL progress, errors).
This module starts an assessment, hands out its work, and runs each job supervised; it re-exports the jobs.

The tasks run trainings, cells and the reports through :func:`supervised_training`,
:func:`supervised_cell` and :func:`supervised_finalize`: the same jobs in a child process that the worker
kills on cancellation or at the time limit (:mod:`worker.supervisor`), renewing the assessment's heartbeat
lease meanwhile. A cancelled assessment's unfinished trainings and cells read ``cancelled``.
:func:`resume_stalled` is the recovery sweep for assessments whose worker died mid-job.
"""

from __future__ import annotations

import logging

from amulet.exceptions import RunCancelledError
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.models import ASSESSMENT_ACTIVE
from worker import supervisor
from worker.cells import record_cell_error, run_one_cell
from worker.finalize import Outcome, final_outcome, finalize
from worker.plans import UploadedModelRefusedError, check_uploaded_model, mark_cancelled
from worker.progress import TRANSIENT_ERRORS, AssessmentCancelledError, SqlProgress
from worker.recovery import recover_stale, resume_stalled
from worker.trainings import record_training_error, run_one_training

__all__ = [
    "TRANSIENT_ERRORS",
    "AssessmentCancelledError",
    "Outcome",
    "SqlProgress",
    "UploadedModelRefusedError",
    "cells_left",
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


def cells_left(settings: Settings, assessment_id: str) -> list[str]:
    """Keys of the cells still to run."""
    with session_scope(settings) as session:
        return crud.pending_cell_keys(session, assessment_id=assessment_id)


# ----------------------------------------------------------------------------------------- supervised jobs
def supervised_training(settings: Settings, assessment_id: str, key: str) -> None:
    """:func:`run_one_training` in a child process the worker stops on cancellation or at the time limit.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    try:
        supervisor.run_supervised(
            settings, assessment_id, "worker.trainings:run_one_training", assessment_id, key, training_key=key
        )
    except RunCancelledError:
        mark_cancelled(settings, assessment_id)
    except (supervisor.JobTimeoutError, supervisor.JobDiedError, supervisor.JobFailedError) as exc:
        logger.error("training %s of assessment %s: %s", key, assessment_id, exc)
        record_training_error(settings, assessment_id, key, str(exc))


def supervised_cell(settings: Settings, assessment_id: str, key: str) -> bool:
    """:func:`run_one_cell` in a child process the worker stops on cancellation or at the time limit;
    returns True when no cell of the assessment is left to run.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    try:
        call = "worker.cells:run_one_cell"
        return bool(supervisor.run_supervised(settings, assessment_id, call, assessment_id, key, cell_key=key))
    except RunCancelledError:
        mark_cancelled(settings, assessment_id)
        return False
    except (supervisor.JobTimeoutError, supervisor.JobDiedError, supervisor.JobFailedError) as exc:
        logger.error("cell %s of assessment %s: %s", key, assessment_id, exc)
        return record_cell_error(settings, assessment_id, key, str(exc))


def supervised_finalize(settings: Settings, assessment_id: str) -> None:
    """:func:`finalize` in a child process: reports that hang past the time limit fail the assessment.

    Raises:
        TransientJobError: a database or broker blip (the task retries).
    """
    try:
        supervisor.run_supervised(settings, assessment_id, "worker.finalize:finalize", assessment_id)
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
