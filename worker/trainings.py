"""Training one planned model of an assessment (a job), and recording a training that failed."""

from __future__ import annotations

import logging
import time

from amulet.exceptions import RunCancelledError
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.models import ASSESSMENT_ACTIVE
from worker.plans import UploadedModelRefusedError, cache_dir, check_uploaded_model, load_plan, mark_cancelled
from worker.progress import TRANSIENT_ERRORS, SqlProgress

__all__ = ["record_training_error", "run_one_training"]

logger = logging.getLogger("amulet.worker")


def run_one_training(settings: Settings, assessment_id: str, key: str) -> None:
    """Train (or fetch from the cache) one planned model; engine errors are recorded on the training row."""
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.assess import run_training
    from amulet.utils import configure_threads

    configure_threads()  # this process's share of the cores (AMULET_NUM_THREADS, set by `amulet worker`)

    loaded = load_plan(settings, assessment_id)
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
            cache_dir=cache_dir(settings),
            device=settings.resolve_device(),
            progress=SqlProgress(settings, assessment_id, prefix=f"train/{key}/"),
        )
    except RunCancelledError:
        mark_cancelled(settings, assessment_id)
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
