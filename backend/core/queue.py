"""The Celery configuration, sending work to the broker, and checking that the broker is reachable.

The service's lowest layer does not depend on the worker: :func:`create_celery_app` configures the one
Celery app both sides use (the worker adds its tasks to it in :mod:`worker.celery_app`), and the API sends
tasks by name through a producer app of its own, one per broker URL.

Long GPU jobs: ``acks_late`` + ``reject_on_worker_lost`` (a killed worker's task is redelivered, not
lost), prefetch 1 (a worker holds one task at a time), JSON only. The time limit of a job
(``AMULET_TASK_TIME_LIMIT``) is enforced by :mod:`worker.supervisor` in every pool (the solo pool ignores
Celery's); Celery's own limits sit a minute above it as a backstop for the prefork pool. The result backend
is the database unless ``AMULET_RESULT_BACKEND`` says otherwise (the tasks use no chord and store no result).
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from backend.core.config import Settings, result_backend_url

__all__ = ["START_TASK", "broker_reachable", "create_celery_app", "enqueue_assessment", "get_producer"]

#: Name of the task that starts (or resumes) an assessment.
START_TASK = "amulet.start_assessment"

_lock = threading.Lock()
_producers: dict[tuple[str, str], Celery] = {}


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``' broker, result backend and queue."""
    app = Celery("amulet", broker=settings.resolved_broker_url, backend=result_backend_url(settings))
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.task_visibility_timeout,
        # Sweep for a killed worker's unacknowledged tasks every few seconds (redelivered once they are
        # older than the visibility timeout).
        "unacked_restore_interval": min(10, max(1, settings.task_visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
    }
    if settings.resolved_broker_url.startswith("sqla+"):
        transport_options = {}  # kombu's SQLAlchemy transport hands its options to create_engine
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.task_queue,
        task_time_limit=settings.task_time_limit + 60,
        task_soft_time_limit=settings.task_time_limit + 30,
        task_track_started=True,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        result_expires=7 * 24 * 3600,
        result_chord_retry_interval=1.0,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


def get_producer(settings: Settings) -> Celery:
    """A Celery app for sending tasks to ``settings``' broker (cached per broker and queue)."""
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
