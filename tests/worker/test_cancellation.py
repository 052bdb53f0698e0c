"""Cancellation and time limits: a cancelled run stops, even in steps that report no progress.

The jobs run through ``worker.supervisor`` as the Celery tasks run them (a child process per job, against
the real database and the real engine). The stuck job is the issue's case: a model with a very long layer
list, whose structure check (``load_state_dict`` in ``_check_structure``) takes tens of seconds and reports
nothing; the operator raised ``max_model_layers`` so that it passes the submit limits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

#: 3,000 layers of width 4: about 3 s in the structure check alone on an idle machine, tens of seconds on a busy
#: one (quadratic in the number of layers; 1,500 layers took 0.7 s, too short to cancel inside reliably).
STUCK_LAYERS = [4] * 3000


def _plan(settings: Any, spec: dict[str, Any]) -> str:
    """Plan ``spec`` through the intake path (POST /assessments' own code) and return the assessment id."""
    from service_testing import plan_assessment_row

    return plan_assessment_row(settings, spec)


def stuck_spec(layers: list[int] = STUCK_LAYERS) -> dict[str, Any]:
    from service_testing import census_spec

    return census_spec(
        name="stuck in the structure check",
        dataset={"name": "census", "training_size": 256, "test_size": 100},
        model={"architecture": "linearnet", "config": {"hidden_layer_sizes": layers, "batch_norm": False}},
        training={"epochs": 1, "batch_size": 256},
        defenses=[],
    )


def long_training_spec() -> dict[str, Any]:
    """A baseline that trains for hours (10,000 epochs): only the time limit ends it."""
    from service_testing import census_spec

    return census_spec(name="trains for hours", defenses=[], training={"epochs": 10_000})


@pytest.fixture
def stuck_settings(tmp_path: Path):
    """Service settings whose operator allows 3,000-layer models."""
    from service_testing import make_settings

    from backend.core.db import prestart

    settings = make_settings(tmp_path, max_model_layers=len(STUCK_LAYERS))
    prestart(settings)
    return settings


def _events(settings: Any, assessment_id: str) -> list[tuple[str, str]]:
    from backend import crud
    from backend.core.db import get_sessionmaker

    with get_sessionmaker(settings)() as session:
        return [(e.kind, e.key) for e in crud.list_events(session, assessment_id=assessment_id, limit=10_000)]


def _statuses(settings: Any, assessment_id: str) -> tuple[str, list[str], list[str]]:
    from backend import crud
    from backend.core.db import get_sessionmaker

    with get_sessionmaker(settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        return (
            row.public_status,
            [t.status for t in crud.list_trainings(session, assessment_id=assessment_id)],
            [c.status for c in crud.list_cells(session, assessment_id=assessment_id)],
        )


def _wait_for_event(settings: Any, assessment_id: str, key_suffix: str, timeout: float = 300) -> float:
    """Block until an event whose key ends with ``key_suffix`` exists; returns when it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(kind == "start" and key.endswith(key_suffix) for kind, key in _events(settings, assessment_id)):
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"no {key_suffix!r} event in {timeout} s: {_events(settings, assessment_id)[-5:]}")


def test_run_cell_lets_a_cancellation_through(tmp_path: Path) -> None:
    """A cancellation raised from a progress callback in the middle of an attack is not the cell's error:
    run_cell raises it, and nothing is stored in the cell cache."""
    from service_testing import census_spec

    from amulet.assess import plan_assessment, run_cell
    from amulet.exceptions import RunCancelledError
    from amulet.progress import CallbackProgress, ProgressEvent

    plan = plan_assessment(census_spec(defenses=[]))
    seen: list[str] = []

    def cancel_in_the_attack(event: ProgressEvent) -> None:
        seen.append(event.key)
        if event.key.startswith("cell/"):
            raise RunCancelledError("cancelled by the test")

    with pytest.raises(RunCancelledError):
        progress = CallbackProgress(cancel_in_the_attack)
        run_cell(plan, plan.cells[0].key, cache_dir=tmp_path, device="cpu", progress=progress)
    assert "train" in seen and seen[-1].startswith("cell/")  # it trained, then stopped as the attack began
    assert not list((tmp_path / "cells").rglob("*.json"))


def test_supervised_jobs_run_an_assessment(worker_settings, planned_assessment: str) -> None:
    """Trainings, cells and the reports in child processes: the assessment succeeds, the last training
    claims the cell dispatch exactly once, and no lease is left once the jobs end."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    settings, assessment_id = worker_settings, planned_assessment
    trainings, cells = jobs.start(settings, assessment_id)
    jobs.supervised_training(settings, assessment_id, trainings[0])
    assert jobs.claim_cell_dispatch(settings, assessment_id) is False  # one training is still pending
    jobs.supervised_training(settings, assessment_id, trainings[1])
    assert jobs.claim_cell_dispatch(settings, assessment_id) is True
    assert jobs.claim_cell_dispatch(settings, assessment_id) is False  # claimed once
    assert [jobs.supervised_cell(settings, assessment_id, key) for key in cells] == [False, True]
    jobs.supervised_finalize(settings, assessment_id)
    with get_sessionmaker(settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        assert row.status == "succeeded", row.error
        assert row.alive_until is None
        assert {t.status for t in crud.list_trainings(session, assessment_id=assessment_id)} == {"done"}
        assert {c.attempts for c in crud.list_cells(session, assessment_id=assessment_id)} == {1}


def test_cancel_stops_a_job_stuck_in_the_structure_check(stuck_settings) -> None:
    """Cancel while the training sits in the structure check (no progress reported there): the worker kills
    the job's process; the training and the cell read `cancelled`, the check never finished."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    settings = stuck_settings
    assessment_id = _plan(settings, stuck_spec())
    trainings, _cells = jobs.start(settings, assessment_id)
    latency: dict[str, float] = {}

    def cancel_in_the_structure_check() -> None:
        _wait_for_event(settings, assessment_id, "/structure")
        time.sleep(0.2)  # inside the check (about 3 s on an idle machine, tens of seconds on a busy one)
        with get_sessionmaker(settings)() as session:
            project_id = crud.get_assessment(session, assessment_id=assessment_id).project_id
            assert crud.cancel_assessment(session, assessment_id=assessment_id, project_id=project_id)
            session.commit()
        latency["cancelled_at"] = time.monotonic()

    canceller = threading.Thread(target=cancel_in_the_structure_check)
    canceller.start()
    jobs.supervised_training(settings, assessment_id, trainings[0])  # returns once the job is stopped
    stopped_at = time.monotonic()
    canceller.join(timeout=60)
    assert "cancelled_at" in latency, "the job ended before it could be cancelled"
    print(f"cancel-to-stop latency in the structure check: {stopped_at - latency['cancelled_at']:.2f} s")
    events = _events(settings, assessment_id)
    assert ("start", f"train/{trainings[0]}/structure") in events
    assert ("finish", f"train/{trainings[0]}/structure") not in events  # killed inside the check
    status, training_statuses, cell_statuses = _statuses(settings, assessment_id)
    assert status == "cancelled"
    assert training_statuses == ["cancelled"] and cell_statuses == ["cancelled"]
    with get_sessionmaker(settings)() as session:
        assert crud.get_assessment(session, assessment_id=assessment_id).alive_until is None


def test_the_time_limit_stops_a_long_job(worker_settings) -> None:
    """AMULET_TASK_TIME_LIMIT holds without Celery's help (the solo pool enforces none): a training of hours
    is killed at the limit and recorded as an error naming the setting; the assessment goes on."""
    from worker import jobs

    settings = worker_settings.model_copy(update={"task_time_limit": 4})
    assessment_id = _plan(settings, long_training_spec())
    trainings, _cells = jobs.start(settings, assessment_id)
    jobs.supervised_training(settings, assessment_id, trainings[0])
    status, training_statuses, _ = _statuses(settings, assessment_id)
    assert status == "running" and training_statuses == ["error"]
    from backend import crud
    from backend.core.db import get_sessionmaker

    with get_sessionmaker(settings)() as session:
        error = crud.list_trainings(session, assessment_id=assessment_id)[0].error
    assert error is not None and "time limit exceeded (AMULET_TASK_TIME_LIMIT=4 s)" in error
    assert jobs.claim_cell_dispatch(settings, assessment_id) is True  # its cells run (and report the error)


def kill_yourself(_settings: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail(_settings: Any) -> None:
    raise ValueError("the job's own error")


def answer(_settings: Any, value: int) -> dict[str, Any]:
    return {"answer": value, "pid": os.getpid()}


def test_a_job_whose_process_dies_is_an_error_not_a_hang(worker_settings, planned_assessment: str) -> None:
    """A job process killed from outside (the kernel's OOM killer sends SIGKILL) is reported as such, and
    the next job gets a fresh process; an error the job did not record is reported with its message."""
    from worker import jobs, supervisor

    settings, assessment_id = worker_settings, planned_assessment
    jobs.start(settings, assessment_id)
    first = supervisor.run_supervised(settings, assessment_id, "test_cancellation:answer", 1)
    assert first["answer"] == 1 and first["pid"] != os.getpid()
    assert supervisor.run_supervised(settings, assessment_id, "test_cancellation:answer", 2)["pid"] == first["pid"]
    with pytest.raises(supervisor.JobDiedError, match="SIGKILL"):
        supervisor.run_supervised(settings, assessment_id, "test_cancellation:kill_yourself")
    with pytest.raises(supervisor.JobFailedError, match="ValueError: the job's own error"):
        supervisor.run_supervised(settings, assessment_id, "test_cancellation:fail")
    after = supervisor.run_supervised(settings, assessment_id, "test_cancellation:answer", 3)
    assert after["answer"] == 3 and after["pid"] != first["pid"]  # a new job process after the death
    os.kill(after["pid"], signal.SIGKILL)  # killed while idle, between two jobs
    time.sleep(0.5)
    again = supervisor.run_supervised(settings, assessment_id, "test_cancellation:answer", 4)
    assert again["answer"] == 4 and again["pid"] != after["pid"]
