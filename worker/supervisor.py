"""Run each job (a training, a cell, the reports) in a child process that the worker can stop.

Parts of a job report no progress (building a model, checking its structure, loading data, a long native
call), so a cancellation raised from a progress callback cannot stop them, and Celery's default solo pool
enforces no time limit. :func:`run_supervised` therefore hands the job to a child process (the *job
process*, forked once and kept for the next jobs while it lives) and watches it from the worker:

- every ``CANCEL_POLL_SECONDS`` it reads the assessment's status; once the assessment is cancelled or
  deleted, it kills the child (SIGKILL: nothing in a half-built model is worth saving; the database rolls
  back the child's open transaction);
- every quarter of ``stall_after`` it renews the assessment's heartbeat lease and the running row's
  ``updated_at`` (:func:`backend.crud.renew_lease`), so a dead worker shows as ``stalled``;
- past ``task_time_limit`` it kills the child and reports :class:`JobTimeoutError`;
- a child that dies on its own (out of memory, a crash in native code) is reported as :class:`JobDiedError`;
- every ``stall_after`` seconds it runs the recovery sweep (:func:`worker.recovery.resume_stalled`), so a live
  worker resumes the assessments of a dead one.

A killed job process is forked again for the next job. It dies with the worker (``PR_SET_PDEATHSIG`` on
Linux): a SIGKILLed worker leaves no orphan writing results. It ignores SIGINT/SIGTERM, which are the
worker's to handle (Celery's warm shutdown waits for the job). Requests, return values and errors travel
as JSON lines over pipes. Forking is safe because the worker itself never runs the engine: it imports
nothing that starts threads or touches a GPU, and the job process initialises CUDA, if at all.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from amulet.exceptions import RunCancelledError
from backend import crud
from backend.core.config import Settings
from backend.core.db import dispose_engines, session_scope
from backend.models import ASSESSMENT_ACTIVE, utcnow
from worker.progress import TRANSIENT_ERRORS
from worker.recovery import resume_stalled

__all__ = [
    "CANCEL_POLL_SECONDS",
    "JobCancelledError",
    "JobDiedError",
    "JobFailedError",
    "JobTimeoutError",
    "TransientJobError",
    "run_supervised",
]

logger = logging.getLogger("amulet.worker")

#: How often the worker reads whether the job's assessment was cancelled (a one-row SELECT).
CANCEL_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class JobCancelledError(RunCancelledError):
    """The job's assessment was cancelled or deleted; the child was stopped."""


class JobTimeoutError(Exception):
    """The job ran past ``task_time_limit`` (AMULET_TASK_TIME_LIMIT); the child was killed."""


class JobDiedError(Exception):
    """The child process died without an answer (killed by a signal, out of memory, a native crash)."""


class JobFailedError(Exception):
    """The job raised an error the job function itself did not record (the message says which)."""


class TransientJobError(ConnectionError):
    """The job hit a database or broker blip (worth a retry, like ``worker.progress.TRANSIENT_ERRORS``)."""


@dataclass
class _Watch:
    settings: Settings
    assessment_id: str
    training_key: str | None
    cell_key: str | None
    last_beat: float = 0.0

    def beat(self, now: float) -> str | None:
        """Renew the lease and read the status (None: the assessment is gone)."""
        self.last_beat = now
        alive_until = utcnow() + timedelta(seconds=self.settings.stall_after)
        with session_scope(self.settings) as session:
            return crud.renew_lease(
                session,
                assessment_id=self.assessment_id,
                alive_until=alive_until,
                training_key=self.training_key,
                cell_key=self.cell_key,
            )

    def status(self) -> str | None:
        with session_scope(self.settings) as session:
            row = crud.get_assessment(session, assessment_id=self.assessment_id)
            return None if row is None else row.status

    def end(self) -> None:
        try:
            with session_scope(self.settings) as session:
                crud.end_lease(session, assessment_id=self.assessment_id)
        except Exception:  # the lease then runs out on its own; never hide the job's outcome for it
            logger.exception("could not end the lease of assessment %s", self.assessment_id)


class _JobProcess:
    """The child that runs this worker's jobs, one at a time, for as long as it is not killed.

    It is kept between jobs so that what a job loads once (the engine's imports, datasets, plans, database
    connections) serves the next ones, as it did when jobs ran in the worker itself; it is forked again only
    after it was killed (cancellation, time limit) or died. Requests and answers are JSON lines over pipes.
    """

    def __init__(self) -> None:
        to_child, self._requests = os.pipe()
        self._answers, from_child = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._requests)
            os.close(self._answers)
            _child_main(to_child, from_child)  # never returns
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self.owner = os.getpid()  # a process forked from the owner (a prefork pool child) must not use it

    def send(self, request: dict[str, Any]) -> None:
        data = memoryview(json.dumps(request).encode() + b"\n")
        while data:
            data = data[os.write(self._requests, data) :]

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next answer, None when none came within ``timeout``; raises EOFError when the child is gone."""
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> int:
        """SIGKILL the child, reap it and close the pipes; returns its wait status."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        return self.close()

    def close(self) -> int:
        status = os.waitpid(self.pid, 0)[1]
        for fd in (self._requests, self._answers):
            with contextlib.suppress(OSError):
                os.close(fd)
        return status


_local = threading.local()  # one job process per thread that runs jobs (the threads pool has several)


def _job_process() -> _JobProcess:
    process: _JobProcess | None = getattr(_local, "process", None)
    if process is not None and process.owner != os.getpid():
        process = None  # inherited through a fork: not this process's child
    if process is None:
        process = _local.process = _JobProcess()
        ready = process.receive(timeout=600)  # the engine's imports, in the child; no time limit runs yet
        if ready is None or not ready.get("ready"):
            _local.process = None
            process.kill()
            raise JobDiedError(f"the job process did not start: {ready}")
    return process


def _forget(process: _JobProcess) -> None:
    if getattr(_local, "process", None) is process:
        _local.process = None


def _child_main(requests_fd: int, answers_fd: int) -> None:
    """In the child: run requested jobs one by one, one JSON answer line each; never returns."""
    code = 0
    try:
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the worker
        for sig in (signal.SIGINT, signal.SIGTERM):  # the worker's to handle (Celery's warm shutdown)
            signal.signal(sig, signal.SIG_IGN)
        dispose_engines()  # the parent's pooled connections are not this process's to use
        import amulet.assess  # noqa: F401  (the engine's imports, before the first job's clock starts)

        def answer(message: dict[str, Any]) -> None:
            data = memoryview(json.dumps(message).encode() + b"\n")
            while data:
                data = data[os.write(answers_fd, data) :]

        answer({"ready": True})
        settings_cache: dict[str, Settings] = {}
        with os.fdopen(requests_fd, "rb") as requests:
            for line in requests:
                request = json.loads(line)
                settings = settings_cache.get(request["settings"])
                if settings is None:
                    settings = settings_cache[request["settings"]] = Settings.model_validate_json(request["settings"])
                try:
                    module, _, name = request["call"].partition(":")
                    value = getattr(importlib.import_module(module), name)(settings, *request["args"])
                    reply: dict[str, Any] = {"value": value}
                except RunCancelledError:
                    reply = {"cancelled": True}
                except Exception as exc:
                    kind = "transient" if isinstance(exc, TRANSIENT_ERRORS) else "error"
                    reply = {kind: f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                answer(reply)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _sweep(settings: Settings) -> None:
    """While a job runs, look for assessments whose worker died (another worker's, with Redis)."""
    try:
        resume_stalled(settings)
    except Exception:  # the sweep is a courtesy; the job goes on
        logger.exception("the recovery sweep failed")


def run_supervised(
    settings: Settings,
    assessment_id: str,
    call: str,
    *args: Any,
    training_key: str | None = None,
    cell_key: str | None = None,
    time_limit: float | None = None,
) -> Any:
    """Run ``call(settings, *args)`` in the job process, watched as the module docstring says.

    Args:
        settings: The worker's settings (database, ``stall_after``, ``task_time_limit``); they travel to the
            job process as JSON.
        assessment_id: The assessment the job belongs to (its status is watched, its lease renewed).
        call: ``"module:function"`` of the job; it does its own database writes and returns a JSON-able value.
        *args: JSON-able arguments after ``settings``.
        training_key: The training row the job runs (its heartbeat is renewed), if any.
        cell_key: The cell row the job runs, if any.
        time_limit: Seconds before the job is killed (default: ``settings.task_time_limit``).

    Returns:
        What ``call`` returned.

    Raises:
        JobCancelledError: the assessment was cancelled or deleted (the job was killed, or stopped itself).
        JobTimeoutError: the time limit passed (the job was killed).
        JobDiedError: the job process died without answering.
        TransientJobError: the job hit a database or broker blip.
        JobFailedError: the job raised an error it did not record itself.
    """
    limit = float(time_limit if time_limit is not None else settings.task_time_limit)
    beat_every = max(0.2, settings.stall_after / 4)
    request = {"call": call, "args": list(args), "settings": settings.model_dump_json()}
    process = _job_process()  # before the lease: a job process's start-up (imports) is no job's time
    try:
        process.send(request)
    except OSError:  # it died while idle (killed from outside): start another one
        _forget(process)
        process.close()
        process = _job_process()
        process.send(request)
    watch = _Watch(settings, assessment_id, training_key, cell_key)
    watch.beat(time.monotonic())
    started = last_sweep = time.monotonic()
    done = False
    try:
        while True:
            try:
                answer = process.receive(timeout=CANCEL_POLL_SECONDS)
            except EOFError:
                _forget(process)
                raise JobDiedError(_death(process.close())) from None
            if answer is not None:
                done = True
                return _unwrap(answer)
            now = time.monotonic()
            if now - started > limit:
                raise JobTimeoutError(f"time limit exceeded (AMULET_TASK_TIME_LIMIT={settings.task_time_limit:g} s)")
            try:
                status = watch.beat(now) if now - watch.last_beat >= beat_every else watch.status()
            except TRANSIENT_DB_ERRORS as exc:  # a database blip must not kill a long job: look again soon
                logger.warning("could not renew the heartbeat of assessment %s: %s", assessment_id, exc)
                continue
            if status not in ASSESSMENT_ACTIVE:
                logger.info("assessment %s is %s: stopping its job", assessment_id, status or "deleted")
                raise JobCancelledError(assessment_id)
            if now - last_sweep >= settings.stall_after:
                last_sweep = now
                _sweep(settings)
    finally:
        if not done and getattr(_local, "process", None) is process:
            # cancelled, timed out, or the worker itself is stopping: the job must not go on
            _forget(process)
            process.kill()
        watch.end()


def _death(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        name = signal.Signals(os.WTERMSIG(wait_status)).name
        return f"the job's process was killed by {name} (out of memory?) before it finished"
    return f"the job's process exited with code {os.waitstatus_to_exitcode(wait_status)} without an answer"


def _unwrap(answer: dict[str, Any]) -> Any:
    if answer.get("cancelled"):
        raise JobCancelledError("cancelled")
    if "transient" in answer:
        raise TransientJobError(answer["transient"])
    if "error" in answer:
        logger.error("job failed in its process:\n%s", answer.get("traceback", ""))
        raise JobFailedError(answer["error"])
    return answer.get("value")
