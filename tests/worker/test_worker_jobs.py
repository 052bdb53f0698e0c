"""The worker's jobs against a real database and the real engine (no Celery eager mode, no mocks)."""

from __future__ import annotations

import json

from sqlalchemy import func, select, text


def _counts(settings, assessment_id: str) -> tuple[int, int]:
    from backend.core.db import get_sessionmaker
    from backend.models import Cell, MetricValue

    with get_sessionmaker(settings)() as session:
        cells = session.scalar(select(func.count()).select_from(Cell).where(Cell.assessment_id == assessment_id))
        metrics = session.scalar(select(func.count()).select_from(MetricValue))
    return int(cells or 0), int(metrics or 0)


def test_celery_reliability_settings() -> None:
    from worker import tasks
    from worker.celery_app import celery_app

    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_time_limit > 0 and conf.task_soft_time_limit < conf.task_time_limit
    for task in (
        tasks.start_assessment,
        tasks.train_model,
        tasks.run_cell,
        tasks.dispatch_cells,
        tasks.finalize_assessment,
    ):
        assert task.acks_late and task.reject_on_worker_lost, task.name
        assert task.max_retries == tasks.MAX_RETRIES, task.name  # no task retries forever
    # Celery's solo pool ignores its time limits; the job processes enforce AMULET_TASK_TIME_LIMIT, and
    # Celery's limits sit above it as a backstop for the prefork pool.
    from amulet.settings import get_settings

    assert conf.task_soft_time_limit > get_settings().task_time_limit


def test_jobs_run_an_assessment_idempotently(worker_settings, planned_assessment: str) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    settings, assessment_id = worker_settings, planned_assessment
    trainings, cells = jobs.start(settings, assessment_id)
    assert len(trainings) == 2 and len(cells) == 2
    for key in trainings:
        jobs.run_one_training(settings, assessment_id, key)
    assert jobs.start(settings, assessment_id) == ([], cells)  # a resumed start skips finished trainings
    none_left = [jobs.run_one_cell(settings, assessment_id, key) for key in cells]
    assert none_left == [False, True]
    n_cells, n_metrics = _counts(settings, assessment_id)
    assert n_cells == 2 and n_metrics >= 4
    # a redelivered cell task is a no-op: no new row, no second attempt
    assert jobs.run_one_cell(settings, assessment_id, cells[0]) is True
    assert _counts(settings, assessment_id) == (n_cells, n_metrics)
    assert jobs.finalize(settings, assessment_id) is True
    assert jobs.finalize(settings, assessment_id) is False  # only one finalizer wins
    with get_sessionmaker(settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        assert row.status == "succeeded" and row.exit_code == 0
        assert {c.attempts for c in crud.list_cells(session, assessment_id=assessment_id)} == {1}
        formats = {r.format for r in crud.list_reports(session, assessment_id=assessment_id)}
        assert {"html", "pdf", "json", "junit"} <= formats
        kinds = {e.kind for e in crud.list_events(session, assessment_id=assessment_id, limit=1000)}
        assert {"queued", "started", "start", "finish", "cell", "succeeded"} <= kinds


def test_cancelled_assessment_runs_nothing(worker_settings, planned_assessment: str) -> None:
    """Cancelling marks every unfinished training and cell `cancelled`; a task that arrives later runs nothing."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    with get_sessionmaker(worker_settings)() as session:
        project_id = crud.get_assessment(session, assessment_id=planned_assessment).project_id
        cells = crud.pending_cell_keys(session, assessment_id=planned_assessment)
        trainings = crud.pending_training_keys(session, assessment_id=planned_assessment)
        assert crud.cancel_assessment(session, assessment_id=planned_assessment, project_id=project_id)
        session.commit()
    assert jobs.start(worker_settings, planned_assessment) is None
    assert jobs.run_one_training(worker_settings, planned_assessment, trainings[0]) is None
    assert jobs.run_one_cell(worker_settings, planned_assessment, cells[0]) is False
    with get_sessionmaker(worker_settings)() as session:
        assert crud.pending_cell_keys(session, assessment_id=planned_assessment) == []
        rows = crud.list_cells(session, assessment_id=planned_assessment)
        assert {c.status for c in rows} == {"cancelled"} and {c.attempts for c in rows} == {0}
        assert {t.status for t in crud.list_trainings(session, assessment_id=planned_assessment)} == {"cancelled"}


def test_recover_stale_requeues_interrupted_assessments(worker_settings, planned_assessment: str) -> None:
    """With the embedded broker a killed worker's task is gone: a starting worker queues the assessment again."""
    from sqlalchemy import create_engine

    from worker import jobs

    assert jobs.recover_stale(worker_settings) == [planned_assessment]
    broker = create_engine(worker_settings.resolved_broker_url.removeprefix("sqla+"))
    with broker.connect() as connection:
        queued = connection.execute(text("SELECT count(*) FROM kombu_message WHERE visible = 1")).scalar_one()
    broker.dispose()
    assert queued == 1


def test_jobs_apply_the_thread_setting(worker_settings, planned_assessment: str, monkeypatch) -> None:
    import torch

    from amulet.settings import get_settings
    from worker import jobs

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setenv("AMULET_NUM_THREADS", "1")  # what `amulet worker --concurrency 2` sets on 2 cores
    get_settings.cache_clear()
    try:
        trainings, _ = jobs.start(worker_settings, planned_assessment)
        jobs.run_one_training(worker_settings, planned_assessment, trainings[0])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("AMULET_NUM_THREADS")
        get_settings.cache_clear()


def _api(settings):
    """A TestClient of the real app on the worker's database, authenticated with the admin token."""
    from fastapi.testclient import TestClient
    from service_testing import ADMIN_TOKEN

    from backend.main import create_app

    return TestClient(create_app(settings, migrate=False)), {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_an_errored_cell_ends_partial_not_succeeded(worker_settings, planned_assessment: str) -> None:
    """One cell of the defended row hits the task time limit (the path tasks.run_cell takes on
    SoftTimeLimitExceeded): the assessment ends `partial` with exit code 2 and the error, everywhere."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    settings, assessment_id = worker_settings, planned_assessment
    trainings, cells = jobs.start(settings, assessment_id)
    for key in trainings:
        jobs.run_one_training(settings, assessment_id, key)
    with get_sessionmaker(settings)() as session:
        rows = {c.key: c.row for c in crud.list_cells(session, assessment_id=assessment_id)}
    defended = next(k for k in cells if rows[k] != "baseline")
    jobs.run_one_cell(settings, assessment_id, next(k for k in cells if rows[k] == "baseline"))
    assert jobs.record_cell_error(settings, assessment_id, defended, "time limit exceeded (AMULET_TASK_TIME_LIMIT)")
    assert jobs.finalize(settings, assessment_id) is True
    client, headers = _api(settings)
    with client:
        detail = client.get(f"/assessments/{assessment_id}", headers=headers).json()
        assert detail["status"] == "partial" and detail["exit_code"] == 2
        assert detail["error"].startswith("partial: 1 of 2 cells errored")
        assert any(defended in e and "time limit exceeded" in e for e in detail["errors"])
        listed = client.get("/assessments", params={"status": "partial"}, headers=headers).json()
        assert [a["id"] for a in listed["data"]] == [assessment_id]
        assert listed["data"][0]["error"] == detail["error"]
        # the results' warnings travel with the listing (one seed is too few to read an interval)
        assert "few_seeds" in {w["code"] for w in listed["data"][0]["warnings"]}
        # the measured cell is still reported: in the results document and in the paginated cell results
        document = client.get(f"/assessments/{assessment_id}/report.json", headers=headers)
        assert document.status_code == 200
        assert {c["status"] for c in document.json()["cells"]} == {"ok", "error"}
        results = client.get(f"/assessments/{assessment_id}/results", headers=headers).json()
        assert results["count"] == 2 and {c["status"] for c in results["data"]} == {"ok", "error"}


def test_a_model_that_does_not_fit_the_data_at_run_time_fails(worker_settings, tmp_path) -> None:
    """The issue's case, queued without pre-flight (an older server; a weights file replaced after submit): a
    6-input model on census. Every cell raises ModelSpecError; the assessment is `failed`, never `succeeded`."""
    from service_testing import census_spec, model_files
    from sqlalchemy import select

    from amulet.assess import load_spec, plan_assessment
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import Project
    from worker import jobs

    spec_bytes, weights_bytes = model_files(tmp_path, n_features=6)
    weights = tmp_path / "six-inputs.safetensors"
    weights.write_bytes(weights_bytes)
    config = json.loads(spec_bytes)["config"]
    spec = census_spec(model={"architecture": "linearnet", "config": config, "weights": str(weights)}, defenses=[])
    loaded = load_spec(spec)
    plan = plan_assessment(loaded)
    with get_sessionmaker(worker_settings)() as session:
        project = session.scalar(select(Project))
        row = crud.create_assessment(
            session,
            project_id=project.id,
            name=loaded.name,
            spec=spec,
            resolved_spec=loaded.model_dump(mode="json"),
            training_keys=[t.key for t in plan.trainings],
            cells=[
                {"key": c.key, "row": c.row, "risk": c.risk, "attack": c.attack, "seed": c.seed} for c in plan.cells
            ],
        )
        session.commit()
        assessment_id = row.id
    trainings, cells = jobs.start(worker_settings, assessment_id)
    for key in trainings:
        jobs.run_one_training(worker_settings, assessment_id, key)
    for key in cells:
        jobs.run_one_cell(worker_settings, assessment_id, key)
    assert jobs.finalize(worker_settings, assessment_id) is True
    client, headers = _api(worker_settings)
    with client:
        detail = client.get(f"/assessments/{assessment_id}", headers=headers).json()
    assert detail["status"] == "failed" and detail["exit_code"] == 2
    assert "the baseline model could not be trained for any seed" in detail["error"]
    assert "ModelSpecError" in detail["error"]
    assert any(e.startswith("training ") and "ModelSpecError" in e for e in detail["errors"])
    assert any(e.startswith("cell ") and "ModelSpecError" in e for e in detail["errors"])
    assert detail["events"][-1]["kind"] == "failed"
