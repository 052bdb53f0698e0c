"""The worker's Celery application: the service's configuration (:func:`backend.core.queue.create_celery_app`,
from the one settings object) plus the worker's tasks and start-up hooks."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_ready

from backend.core.config import get_settings
from backend.core.db import dispose_engines
from backend.core.queue import create_celery_app
from worker.recovery import recover_stale

__all__ = ["celery_app"]

celery_app = create_celery_app(get_settings())
celery_app.conf.include = ["worker.tasks"]


@worker_process_init.connect
def _fresh_engines(**_: Any) -> None:
    """A forked pool process must not reuse its parent's database connections."""
    dispose_engines()


@worker_ready.connect
def _recover(**_: Any) -> None:
    """On start, resume assessments whose tasks were lost (see :func:`worker.recovery.recover_stale`)."""
    recover_stale(get_settings())
