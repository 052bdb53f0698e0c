"""Migrations, first-start initialisation and idempotent upserts, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_testing import make_settings, postgres_database
from sqlalchemy import func, select


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def fresh_settings(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield make_settings(tmp_path, admin_token="")
        return
    with postgres_database() as url:
        yield make_settings(tmp_path, database_url=url, admin_token="")


def test_migrations_match_the_models(fresh_settings) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.core.db import get_engine, run_migrations
    from backend.models import Base

    run_migrations(fresh_settings)
    run_migrations(fresh_settings)  # a second upgrade is a no-op
    with get_engine(fresh_settings).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_admin_token_generated_once(fresh_settings) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker, init_db, run_migrations

    run_migrations(fresh_settings)
    with get_sessionmaker(fresh_settings)() as session:
        token = init_db(session, fresh_settings)
        assert token and token.startswith("amt_")
        assert init_db(session, fresh_settings) is None  # shown once, never again
        found = crud.get_token(session, plaintext=token)
        assert found is not None and found.is_admin


def test_cell_upsert_never_duplicates(fresh_settings) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker, init_db, run_migrations
    from backend.models import Cell, MetricValue, Project

    run_migrations(fresh_settings)
    with get_sessionmaker(fresh_settings)() as session:
        init_db(session, fresh_settings)
        project = session.scalar(select(Project))
        assessment = crud.create_assessment(
            session,
            project_id=project.id,
            name="a",
            spec={},
            resolved_spec={},
            training_keys=["t0"],
            cells=[{"key": "c0", "row": "baseline", "risk": "evasion", "attack": "pgd", "seed": 0}],
        )
        session.commit()
        for attempt in range(3):  # a redelivered task writes the same cell again
            crud.upsert_cell(session, assessment_id=assessment.id, key="c0", status="running", attempt=True)
            crud.upsert_cell(
                session, assessment_id=assessment.id, key="c0", status="ok", metrics={"acc": 0.5 + attempt}
            )
            session.commit()
        crud.upsert_cell(session, assessment_id=assessment.id, key="c-new", status="ok", metrics={"acc": 1.0})
        session.commit()
        assert session.scalar(select(func.count()).select_from(Cell)) == 2
        assert session.scalar(select(func.count()).select_from(MetricValue)) == 2
        cell = session.scalar(select(Cell).where(Cell.key == "c0"))
        assert cell.attempts == 3 and cell.status == "ok"
        values = {(key, metric): value for key, metric, value in crud.metric_rows(session, assessment_id=assessment.id)}
        assert values == {("c0", "acc"): 2.5, ("c-new", "acc"): 1.0}
        assert crud.pending_cell_keys(session, assessment_id=assessment.id) == []
        # the finalizer claim is atomic: only the first caller wins
        assert crud.mark_running(session, assessment_id=assessment.id)
        assert crud.claim_finalize(session, assessment_id=assessment.id)
        assert not crud.claim_finalize(session, assessment_id=assessment.id)
