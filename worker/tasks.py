"""Celery tasks: thin wrappers that take ids, call :mod:`worker.jobs`, and fan work out.

An assessment runs as ``start_assessment`` -> chord(trainings) -> ``dispatch_cells`` -> chord(cells) ->
``finalize_assessment``. Every task is idempotent (see :mod:`worker.jobs`). Database/broker blips are
retried with exponential backoff; engine errors are recorded on the row and the assessment goes on. Each
cell task also triggers the finalizer when it sees no cell left, so the assessment finishes even when a
chord's bookkeeping was lost with a killed worker (the finalizer claims its work atomically).
"""

from __future__ import annotations

from typing import Any

from celery import Task, chord
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
    if trainings:
        chord(train_model.si(assessment_id, key) for key in trainings)(dispatch_cells.si(assessment_id))
    else:
        dispatch_cells.delay(assessment_id)


@celery_app.task(name="amulet.train_model", max_retries=MAX_RETRIES, **_COMMON)
def train_model(self: Task, assessment_id: str, key: str) -> None:
    """Train one planned model (content-addressed cache: a second run is a cache hit)."""
    settings = get_settings()
    try:
        jobs.run_one_training(settings, assessment_id, key)
    except jobs.TRANSIENT_ERRORS as exc:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(exc=exc, countdown=_backoff(self)) from exc
        jobs.record_training_error(settings, assessment_id, key, f"gave up after {MAX_RETRIES} retries: {exc}")
    except SoftTimeLimitExceeded:
        jobs.record_training_error(settings, assessment_id, key, "time limit exceeded (AMULET_TASK_TIME_LIMIT)")


@celery_app.task(name="amulet.dispatch_cells", max_retries=MAX_RETRIES, **_COMMON)
def dispatch_cells(self: Task, assessment_id: str) -> None:
    """Queue every unfinished cell, with the finalizer as the chord's callback."""
    try:
        cells = jobs.cells_left(get_settings(), assessment_id)
    except jobs.TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
    if cells:
        chord(run_cell.si(assessment_id, key) for key in cells)(finalize_assessment.si(assessment_id))
    else:
        finalize_assessment.delay(assessment_id)


@celery_app.task(name="amulet.run_cell", max_retries=MAX_RETRIES, **_COMMON)
def run_cell(self: Task, assessment_id: str, key: str) -> None:
    """Run one defense x risk x seed cell and upsert its row."""
    settings = get_settings()
    try:
        none_left = jobs.run_one_cell(settings, assessment_id, key)
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
        jobs.finalize(get_settings(), assessment_id)
    except jobs.TRANSIENT_ERRORS as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
