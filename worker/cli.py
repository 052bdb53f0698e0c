"""``amulet worker``: run a Celery worker.

A command of the service, added to the ``amulet`` command line by :func:`register` (the engine's CLI looks
this module up by name, so the engine imports nothing of the service). Every ``amulet`` command imports
this module at start: beyond typer, its imports sit inside the command (import cost: the settings load
pydantic-settings, :func:`backend.core.db.prestart` SQLAlchemy and Alembic, seconds together).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

__all__ = ["register", "worker_command"]


def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once (one per GPU is a good start).")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: solo (one process), prefork or threads.")] = "solo",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
    migrate: Annotated[bool, typer.Option(help="Apply database migrations before consuming.")] = True,
) -> None:
    """Run a Celery worker that executes assessments (broker and database from the AMULET_* settings)."""
    # lazy: the settings and the database code (SQLAlchemy, Alembic) load for `amulet worker` only, not when
    # any other `amulet` command starts (amulet._cores is torch-free: this process never loads torch)
    from amulet._cores import thread_count
    from amulet.settings import get_settings
    from backend.core.db import prestart

    settings = get_settings()
    if migrate:
        token = prestart(settings)
        if token:
            typer.echo(f"Created the admin API token (shown once): {token}", err=True)

    # Tasks running at once share the cores: an automatic thread count divides them. The jobs apply the
    # setting when they run (worker.trainings, worker.cells), in whichever pool process they run; this
    # process sets no torch thread count (it runs no engine code).
    threads = thread_count(settings.num_threads, processes=concurrency if pool != "solo" else 1)
    os.environ["AMULET_NUM_THREADS"] = str(threads)
    get_settings.cache_clear()
    # Not at module top: the Celery app is built from the settings when imported, and must see the thread
    # count set just above.
    from worker.celery_app import celery_app

    argv = ["worker", "-Q", settings.task_queue, "--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--loglevel", loglevel, "--hostname", f"amulet-{settings.task_queue}@%h", "--without-gossip"]
    argv += ["--without-mingle"]
    celery_app.worker_main(argv)


def register(app: typer.Typer) -> None:
    """Add ``amulet worker`` to ``app``."""
    app.command("worker")(worker_command)
