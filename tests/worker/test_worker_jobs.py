"""The worker's jobs against a real database and the real engine (no Celery eager mode, no mocks)."""

from __future__ import annotations

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
    from backend import crud
    from backend.core.db import get_sessionmaker
    from worker import jobs

    with get_sessionmaker(worker_settings)() as session:
        project_id = crud.get_assessment(session, assessment_id=planned_assessment).project_id
        assert crud.cancel_assessment(session, assessment_id=planned_assessment, project_id=project_id)
        session.commit()
        cells = crud.pending_cell_keys(session, assessment_id=planned_assessment)
    assert jobs.start(worker_settings, planned_assessment) is None
    assert jobs.run_one_cell(worker_settings, planned_assessment, cells[0]) is False
    with get_sessionmaker(worker_settings)() as session:
        assert crud.pending_cell_keys(session, assessment_id=planned_assessment) == cells


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
