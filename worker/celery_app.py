"""The Celery application, configured from the one settings object.

Long GPU jobs: ``acks_late`` + ``reject_on_worker_lost`` (a killed worker's task is redelivered, not
lost), prefetch 1 (a worker holds one task at a time), JSON only. The time limit of a job
(``AMULET_TASK_TIME_LIMIT``) is enforced by :mod:`worker.supervisor` in every pool (the solo pool ignores
Celery's); Celery's own limits sit a minute above it as a backstop for the prefork pool. The result backend
is the database unless ``AMULET_RESULT_BACKEND`` says otherwise (the tasks use no chord and store no result).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from backend.core.config import Settings, get_settings, result_backend_url

__all__ = ["celery_app", "create_celery_app"]


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


celery_app = create_celery_app(get_settings())
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _fresh_engines(**_: Any) -> None:
    """A forked pool process must not reuse its parent's database connections."""
    from backend.core.db import dispose_engines

    dispose_engines()


@worker_ready.connect
def _recover(**_: Any) -> None:
    """On start, resume assessments whose tasks were lost (see :func:`worker.jobs.recover_stale`)."""
    from worker.jobs import recover_stale

    recover_stale(get_settings())
