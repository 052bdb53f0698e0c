"""Celery tasks: thin wrappers that take ids, call :mod:`worker.jobs`, and fan work out.

An assessment runs as ``start_assessment`` -> one ``train_model`` per training -> ``dispatch_cells`` (queued
by the training that settles last, an atomic claim) -> one ``run_cell`` per cell -> ``finalize_assessment``
(queued by the cell that sees none left; the finalizer claims its work atomically). No chord: Celery's
``chord_unlock`` bookkeeping tasks retried every second forever once a killed worker lost a header task.
Every task is idempotent (see :mod:`worker.jobs`) and retries at most ``MAX_RETRIES`` times: database or
broker blips with exponential backoff; engine errors are recorded on the row and the assessment goes on.
Trainings, cells and the reports run in a child process the worker kills on cancellation or at the time
limit (:mod:`worker.supervisor`); a lost task is resumed by the recovery sweep (``jobs.resume_stalled``).
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from backend.core.config import get_settings
from worker import jobs
from worker.celery_app import celery_app

__all__ = ["dispatch_cells", "finalize_assessment", "run_cell", "start_assessment", "train_model"]

MAX_RETRIES = 6
_COMMON: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


def _backoff(task: Task) -> int:
    return int(min(300, 2 ** (task.request.retries + 1)))


@celery_app.task(name="amulet.start_assessment", max_retries=MAX_RETRIES, **_COMMON)
def start_assessment(self: Task, assessment_id: str) -> None:
    """Mark the assessment running and queue its unfinished trainings (then its cells)."""
    try:
        pending = jobs.start(get_settings(), assessment_id)
    except jobs.TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
    if pending is None:
        return
    trainings, _cells = pending
    for key in trainings:
        train_model.delay(assessment_id, key)
    if not trainings:
        dispatch_cells.delay(assessment_id)


@celery_app.task(name="amulet.train_model", max_retries=MAX_RETRIES, **_COMMON)
def train_model(self: Task, assessment_id: str, key: str) -> None:
    """Train one planned model (content-addressed cache: a second run is a cache hit); the training that
    settles last queues the cells."""
    settings = get_settings()
    try:
        jobs.supervised_training(settings, assessment_id, key)
    except jobs.TRANSIENT_ERRORS as exc:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self)) from exc
        jobs.record_training_error(settings, assessment_id, key, f"gave up after {MAX_RETRIES} retries: {exc}")
    except SoftTimeLimitExceeded:
        jobs.record_training_error(settings, assessment_id, key, "time limit exceeded (AMULET_TASK_TIME_LIMIT)")
    if jobs.claim_cell_dispatch(settings, assessment_id):
        dispatch_cells.delay(assessment_id)


@celery_app.task(name="amulet.dispatch_cells", max_retries=MAX_RETRIES, **_COMMON)
def dispatch_cells(self: Task, assessment_id: str) -> None:
    """Queue every unfinished cell (the last one to finish queues the finalizer)."""
    try:
        cells = jobs.cells_left(get_settings(), assessment_id)
    except jobs.TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
    for key in cells:
        run_cell.delay(assessment_id, key)
    if not cells:
        finalize_assessment.delay(assessment_id)


@celery_app.task(name="amulet.run_cell", max_retries=MAX_RETRIES, **_COMMON)
def run_cell(self: Task, assessment_id: str, key: str) -> None:
    """Run one defense x risk x seed cell and upsert its row."""
    settings = get_settings()
    try:
        none_left = jobs.supervised_cell(settings, assessment_id, key)
    except jobs.TRANSIENT_ERRORS as exc:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self)) from exc
        none_left = jobs.record_cell_error(settings, assessment_id, key, f"gave up after {MAX_RETRIES} retries: {exc}")
    except SoftTimeLimitExceeded:
        none_left = jobs.record_cell_error(settings, assessment_id, key, "time limit exceeded (AMULET_TASK_TIME_LIMIT)")
    if none_left:
        finalize_assessment.delay(assessment_id)


@celery_app.task(name="amulet.finalize_assessment", max_retries=MAX_RETRIES, **_COMMON)
def finalize_assessment(self: Task, assessment_id: str) -> None:
    """Aggregate the results and render the reports (once, whoever calls first)."""
    try:
        jobs.supervised_finalize(get_settings(), assessment_id)
    except jobs.TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
