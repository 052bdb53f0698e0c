"""Worker fixtures: a migrated SQLite service database with a tiny census assessment planned in it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from service_testing import census_spec, make_settings, plan_assessment_row


@pytest.fixture
def worker_settings(tmp_path: Path):
    from backend.main import prestart

    settings = make_settings(tmp_path)
    prestart(settings)
    return settings


@pytest.fixture
def planned_assessment(worker_settings) -> str:
    """Id of a queued tiny census assessment (2 trainings, 2 cells), as POST /assessments stores it."""
    return plan_assessment_row(worker_settings, census_spec())
