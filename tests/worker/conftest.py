"""Worker fixtures: a migrated SQLite service database with a tiny census assessment planned in it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from service_testing import census_spec, make_settings


@pytest.fixture
def worker_settings(tmp_path: Path):
    from backend.main import prestart

    settings = make_settings(tmp_path)
    prestart(settings)
    return settings


@pytest.fixture
def planned_assessment(worker_settings) -> str:
    """Id of a queued tiny census assessment (2 trainings, 2 cells), as POST /assessments stores it."""
    from sqlalchemy import select

    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import Project
    from backend.planning import plan_submission

    with get_sessionmaker(worker_settings)() as session:
        project = session.scalar(select(Project))
        spec = census_spec()
        planned = plan_submission(session, project_id=project.id, spec=spec, name=None)
        row = crud.create_assessment(
            session,
            project_id=project.id,
            name=planned.name,
            spec=spec,
            resolved_spec=planned.resolved_spec,
            training_keys=planned.training_keys,
            cells=planned.cells,
        )
        session.commit()
        return row.id
