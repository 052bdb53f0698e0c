"""A worker that dies shows as `stalled` and is resumed; a stuck job never stalls the queue.

The first test works on the database alone (the API's view and the recovery sweep). The others run real
``amulet worker`` processes (Celery, solo pool, the embedded SQLite broker) and SIGKILL or cancel them, as
``tests/e2e`` does.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_stack import Stack
from service_testing import ADMIN_TOKEN, census_spec, make_settings
from test_cancellation import STUCK_LAYERS, _plan, long_training_spec, stuck_spec

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _api(settings: Any):
    from fastapi.testclient import TestClient

    from backend.main import create_app

    return TestClient(create_app(settings, migrate=False))


def test_a_dead_lease_reads_stalled_and_the_sweep_resumes_it(worker_settings, planned_assessment: str) -> None:
    """A running cell whose worker stopped renewing the lease: GET shows `stalled` (and ?status=stalled finds
    it); the recovery sweep puts the dead cell back to pending, queues the assessment once, and it reads
    `running` again."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import utcnow
    from worker import jobs

    settings, assessment_id = worker_settings, planned_assessment
    _trainings, cells = jobs.start(settings, assessment_id)
    long_ago = utcnow() - timedelta(seconds=10 * settings.stall_after)
    with get_sessionmaker(settings)() as session:
        crud.upsert_cell(session, assessment_id=assessment_id, key=cells[0], status="running", attempt=True)
        crud.renew_lease(session, assessment_id=assessment_id, alive_until=long_ago, cell_key=cells[0])
        session.execute(text("UPDATE cells SET updated_at = :t WHERE key = :k"), {"t": long_ago, "k": cells[0]})
        session.commit()
    with _api(settings) as client:
        detail = client.get(f"/assessments/{assessment_id}", headers=HEADERS).json()
        assert detail["status"] == "stalled"
        assert client.get(f"/assessments/{assessment_id}/status", headers=HEADERS).json()["status"] == "stalled"
        listed = client.get("/assessments", params={"status": "stalled"}, headers=HEADERS).json()
        assert [a["id"] for a in listed["data"]] == [assessment_id] and listed["data"][0]["status"] == "stalled"
        assert client.get("/assessments", params={"status": "running"}, headers=HEADERS).json()["count"] == 0
        assert jobs.resume_stalled(settings) == [assessment_id]
        assert jobs.resume_stalled(settings) == []  # resumed once, not at every sweep
        detail = client.get(f"/assessments/{assessment_id}", headers=HEADERS).json()
        assert detail["status"] == "running"
        assert client.get(f"/assessments/{assessment_id}/status", headers=HEADERS).json()["status"] == "running"
        listed_cells = client.get(f"/assessments/{assessment_id}/cells", headers=HEADERS).json()["data"]
        assert next(c for c in listed_cells if c["key"] == cells[0])["status"] == "pending"
        assert detail["events"][-1]["kind"] == "resumed"
    assert _broker_messages(settings) == [("amulet.start_assessment", [assessment_id])]


def test_a_dead_finalizer_is_released_and_the_assessment_finishes(worker_settings, planned_assessment: str) -> None:
    """The worker died while rendering the reports (status finalizing, lease run out): the sweep releases the
    claim, and the resumed assessment is finalized once."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import utcnow
    from worker import jobs

    settings, assessment_id = worker_settings, planned_assessment
    trainings, cells = jobs.start(settings, assessment_id)
    for key in trainings:
        jobs.run_one_training(settings, assessment_id, key)
    for key in cells:
        jobs.run_one_cell(settings, assessment_id, key)
    long_ago = utcnow() - timedelta(seconds=10 * settings.stall_after)
    with get_sessionmaker(settings)() as session:
        assert crud.claim_finalize(session, assessment_id=assessment_id)  # the dead worker's claim
        crud.renew_lease(session, assessment_id=assessment_id, alive_until=long_ago)
        session.commit()
        assert crud.get_assessment(session, assessment_id=assessment_id).public_status == "stalled"
    assert jobs.finalize(settings, assessment_id) is False  # claimed by the dead worker
    assert jobs.resume_stalled(settings) == [assessment_id]
    assert jobs.start(settings, assessment_id) == ([], [])  # what the queued start_assessment does first
    jobs.supervised_finalize(settings, assessment_id)
    with get_sessionmaker(settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        assert row.public_status == "succeeded" and row.alive_until is None


def _broker_messages(settings: Any) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in the embedded broker."""
    engine = create_engine(settings.resolved_broker_url.removeprefix("sqla+"))
    try:
        with engine.connect() as connection:
            payloads = connection.execute(text("SELECT payload FROM kombu_message WHERE visible = 1")).scalars()
            out = []
            for payload in payloads:
                message = json.loads(payload)
                body = message["body"]
                if message.get("properties", {}).get("body_encoding") == "base64":
                    import base64

                    body = base64.b64decode(body).decode()
                out.append((message["headers"]["task"], json.loads(body)[0]))
            return out
    finally:
        engine.dispose()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[[int], Stack]]:
    """Real `amulet worker` processes on an embedded service (SQLite database and broker), with
    AMULET_STALL_AFTER=3 and the given AMULET_TASK_TIME_LIMIT."""
    stacks: list[Stack] = []

    def make(time_limit: int) -> Stack:
        stack = Stack(tmp_path / "home", {"AMULET_STALL_AFTER": "3", "AMULET_TASK_TIME_LIMIT": str(time_limit)})
        stack.home.mkdir()
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop()


def _stack_settings(stack: Stack, **extra: Any) -> Any:
    """The settings the stack's processes read from their environment, for this test process."""
    from backend.main import prestart

    settings = make_settings(
        stack.home,
        task_queue=stack.env["AMULET_TASK_QUEUE"],
        stall_after=float(stack.env["AMULET_STALL_AFTER"]),
        task_time_limit=int(stack.env["AMULET_TASK_TIME_LIMIT"]),
        **extra,
    )
    prestart(settings)
    return settings


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _detail(client: Any, assessment_id: str) -> dict[str, Any]:
    """GET /assessments/{id}, with its cells and trainings (from their own pages) and all of its events."""
    detail = client.get(f"/assessments/{assessment_id}", headers=HEADERS).json()
    for part in ("cells", "trainings"):
        detail[part] = client.get(f"/assessments/{assessment_id}/{part}", headers=HEADERS).json()["data"]
    return detail


def _wait(client: Any, assessment_id: str, statuses: tuple[str, ...], stack: Stack, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = _detail(client, assessment_id)
        if detail["status"] in statuses:
            return detail
        time.sleep(0.2)
    raise AssertionError(f"{assessment_id} never reached {statuses}: {detail['status']}\n{stack.logs()}")


def test_sigkilled_worker_reads_stalled_then_a_new_worker_resumes_it(make_stack: Callable[[int], Stack]) -> None:
    """SIGKILL the worker while its job process trains or attacks: the job process dies with it, the API
    shows `stalled` once the lease runs out (AMULET_STALL_AFTER=3), a new worker's recovery sweep resumes it,
    and it succeeds with one row per cell. No chord bookkeeping is left retrying in the broker."""
    stack = make_stack(600)
    settings = _stack_settings(stack)
    spec = census_spec(dataset={"name": "census", "training_size": 2000, "test_size": 300})
    spec["training"] = {"epochs": 4, "batch_size": 64}
    assessment_id = _plan(settings, spec)
    from backend.core.queue import enqueue_assessment

    enqueue_assessment(settings, assessment_id)
    worker = stack.start_worker("worker-1")
    with _api(settings) as client:
        deadline = time.monotonic() + 240
        victim: tuple[str, str] | None = None
        jobs: list[int] = []
        while victim is None and time.monotonic() < deadline:
            detail = _detail(client, assessment_id)
            running = [("trainings", t["key"]) for t in detail["trainings"] if t["status"] == "running"]
            running += [("cells", c["key"]) for c in detail["cells"] if c["status"] == "running"]
            jobs = _children(worker.pid)
            if running and jobs:
                victim = running[0]
            else:
                time.sleep(0.05)
        assert victim is not None, f"no job was seen running\n{stack.logs()}"
        stack.kill("worker-1")
        killed_at = time.monotonic()
        while any(_alive(pid) for pid in jobs):
            assert time.monotonic() - killed_at < 10, f"the job process {jobs} outlived its worker"
            time.sleep(0.05)
        assert _detail(client, assessment_id)["status"] == "running"  # the lease has not run out yet
        stalled = _wait(client, assessment_id, ("stalled",), stack, timeout=60)
        print(f"stalled shown {time.monotonic() - killed_at:.1f} s after the SIGKILL (AMULET_STALL_AFTER=3)")
        assert stalled["finished_at"] is None
        stack.start_worker("worker-2")
        detail = _wait(client, assessment_id, ("succeeded", "partial", "failed", "cancelled"), stack, timeout=400)
    assert detail["status"] == "succeeded", (detail["errors"], stack.logs())
    assert _resumed(settings, assessment_id)
    kind, key = victim
    assert next(r for r in detail[kind] if r["key"] == key)["attempts"] >= 2  # the killed job ran again
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*), count(DISTINCT key) FROM cells WHERE assessment_id = :a"), {"a": assessment_id}
        ).one()
    engine.dispose()
    assert tuple(rows) == (detail["n_cells"], detail["n_cells"])
    _assert_broker_drains(settings, stack)


def _resumed(settings: Any, assessment_id: str) -> bool:
    from backend import crud
    from backend.core.db import get_sessionmaker

    with get_sessionmaker(settings)() as session:
        return any(e.kind == "resumed" for e in crud.list_events(session, assessment_id=assessment_id, limit=10_000))


def _assert_broker_drains(settings: Any, stack: Stack, timeout: float = 30) -> None:
    """Nothing is left in the queue once the work is done (chord_unlock tasks used to retry forever)."""
    deadline = time.monotonic() + timeout
    while True:
        left = _broker_messages(settings)
        assert all(name != "celery.chord_unlock" for name, _ in left), left
        if not left:
            return
        assert time.monotonic() < deadline, f"tasks left in the broker: {left}\n{stack.logs()}"
        time.sleep(0.5)


@pytest.mark.slow  # about 5 minutes on 2 busy cores; test_cancellation covers cancel and time limit in a minute
def test_a_stuck_job_does_not_stall_the_queue(make_stack: Callable[[int], Stack]) -> None:
    """One solo worker, three assessments queued: A sits in its structure check and is cancelled; C's training
    (10,000 epochs) runs past AMULET_TASK_TIME_LIMIT=40 and is killed; B, queued behind both, still runs and
    succeeds."""
    from backend.core.queue import enqueue_assessment

    stack = make_stack(40)
    settings = _stack_settings(stack, max_model_layers=len(STUCK_LAYERS))
    stuck_a = _plan(settings, stuck_spec())
    stuck_c = _plan(settings, long_training_spec())
    spec_b = census_spec(name="behind the stuck ones")
    tiny_b = _plan(settings, spec_b)
    for assessment_id in (stuck_a, stuck_c, tiny_b):
        enqueue_assessment(settings, assessment_id)
    worker = stack.start_worker()
    with _api(settings) as client:
        deadline = time.monotonic() + 240
        while not any(e["key"].endswith("/structure") for e in _detail(client, stuck_a)["events"]):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)
        time.sleep(1.0)
        jobs = _children(worker.pid)
        assert jobs, "the job runs in a child process of the worker"
        response = client.post(f"/assessments/{stuck_a}/cancel", headers=HEADERS)
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        cancelled_at = time.monotonic()
        while any(_alive(pid) for pid in jobs):
            assert time.monotonic() - cancelled_at < 30, "the cancelled job's process was not stopped"
            time.sleep(0.05)
        print(f"cancel-to-stop latency (real worker, structure check): {time.monotonic() - cancelled_at:.2f} s")
        detail_b = _wait(client, tiny_b, ("succeeded", "partial", "failed", "cancelled"), stack, timeout=400)
        detail_a, detail_c = _detail(client, stuck_a), _detail(client, stuck_c)
    assert detail_b["status"] == "succeeded", (detail_b["errors"], stack.logs())
    assert detail_a["status"] == "cancelled"
    assert [t["status"] for t in detail_a["trainings"]] == ["cancelled"]
    assert [c["status"] for c in detail_a["cells"]] == ["cancelled"]
    assert not any(e["kind"] == "finish" and e["key"].endswith("/structure") for e in detail_a["events"])
    training_c = detail_c["trainings"][0]
    assert training_c["status"] == "error", detail_c
    assert "time limit exceeded (AMULET_TASK_TIME_LIMIT=40 s)" in training_c["error"]
    assert detail_c["status"] == "failed"  # its cell reports the failed training; C did not hold up B
