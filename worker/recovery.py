"""Resuming assessments whose tasks were lost or whose worker died (finished work is skipped on resume)."""

from __future__ import annotations

import logging
from datetime import timedelta

from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.queue import enqueue_assessment
from backend.models import utcnow

__all__ = ["recover_stale", "resume_stalled"]

logger = logging.getLogger("amulet.worker")


def recover_stale(settings: Settings) -> list[str]:
    """Re-queue active assessments whose tasks were lost (no heartbeat for a while); returns their ids.

    With the embedded SQLite broker, a task taken by a worker that was killed is never redelivered, and
    ``amulet serve`` runs one worker: every active assessment is resumed when it starts. With Redis, the
    broker redelivers unacknowledged tasks after the visibility timeout, so only assessments silent for
    longer than that are resumed. Stalled assessments (:func:`resume_stalled`) are resumed in both cases.
    Resuming is safe: finished trainings and cells are skipped.
    """
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


def resume_stalled(settings: Settings) -> list[str]:
    """The recovery sweep: re-queue active assessments whose worker died mid-job; returns their ids.

    Stalled: the heartbeat lease ran out, or a running training or cell has had no heartbeat for
    ``stall_after`` seconds. Their dead rows go back to ``pending`` (a dead finalizer's claim is released)
    and the assessment is queued again; finished work is skipped when it resumes. A worker runs this sweep
    when it starts and, while it runs jobs, every ``stall_after`` seconds.
    """
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
