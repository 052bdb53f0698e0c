"""Service fixtures: the same API tests run against SQLite (+ SQLite broker) and PostgreSQL (+ Redis).

Helpers live in service_testing.py, importable here because pytest puts this folder on sys.path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_testing import (
    ADMIN_TOKEN,
    REDIS_HOST,
    REDIS_PORT,
    make_settings,
    postgres_database,
    purge_redis_queue,
    require_port,
)

from amulet.settings import Settings

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
]


@pytest.fixture(scope="session", params=BACKENDS)
def service_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a migrated service on one database backend (session-wide, one per backend)."""
    home = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "sqlite":
        yield make_settings(home)
        return
    require_port(REDIS_HOST, REDIS_PORT, "Redis")
    with postgres_database() as url:
        settings = make_settings(home, database_url=url, broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
        yield settings
        purge_redis_queue(settings.task_queue)


@pytest.fixture(scope="session")
def client(service_settings: Settings) -> Iterator[TestClient]:
    """A TestClient of the app (its start-up applies the migrations)."""
    from backend.main import create_app

    with TestClient(create_app(service_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def project_headers(client: TestClient, admin_headers: dict[str, str]) -> dict[str, str]:
    """Headers carrying the first token of a fresh project."""
    response = client.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:8]}"}, headers=admin_headers)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']['token']}"}
