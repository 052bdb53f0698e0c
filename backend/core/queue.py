"""Sending work to the Celery broker, and checking that the broker is reachable.

The API never imports the worker's tasks: it sends them by name through a producer app configured like
the worker (:func:`worker.celery_app.create_celery_app`), one per broker URL.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from backend.core.config import Settings

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["START_TASK", "broker_reachable", "enqueue_assessment", "get_producer"]

#: Name of the task that starts (or resumes) an assessment.
START_TASK = "amulet.start_assessment"

_lock = threading.Lock()
_producers: dict[tuple[str, str], Celery] = {}


def get_producer(settings: Settings) -> Celery:
    """A Celery app for sending tasks to ``settings``' broker (cached per broker and queue)."""
    from worker.celery_app import create_celery_app

    key = (settings.resolved_broker_url, settings.task_queue)
    with _lock:
        if key not in _producers:
            _producers[key] = create_celery_app(settings)
        return _producers[key]


def enqueue_assessment(settings: Settings, assessment_id: str) -> None:
    """Queue the start of an assessment (call only after the assessment row is committed)."""
    get_producer(settings).send_task(START_TASK, args=[assessment_id], queue=settings.task_queue)


def broker_reachable(settings: Settings, *, timeout: float = 2.0) -> tuple[bool, str]:
    """(True, "") when the broker answers within ``timeout`` seconds, else (False, reason)."""
    try:
        with get_producer(settings).connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
        return True, ""
    except Exception as exc:  # any failure means unreachable; the reason is reported
        return False, f"{type(exc).__name__}: {exc}"
