"""The cheap poll: ``GET /assessments/{id}/status`` with a weak ETag, 304 on a matching ``If-None-Match``, a
new ETag whenever what it shows changes, and the dashboard client's use of it.

Progress is written with the worker's own crud calls, as the worker records it.
"""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec

from amulet.settings import Settings
from backend import crud
from backend.core.db import get_sessionmaker
from dashboard.client import ApiClient


@pytest.fixture
def assessment(client: TestClient, project_headers) -> dict:
    response = client.post("/assessments", json={"spec": census_spec(seeds=[0, 1])}, headers=project_headers)
    assert response.status_code == 202, response.text
    return response.json()


def _finish_cell(settings: Settings, assessment_id: str, index: int) -> None:
    with get_sessionmaker(settings)() as session:
        cell = crud.list_cells(session, assessment_id=assessment_id)[index]
        crud.upsert_cell(session, assessment_id=assessment_id, key=cell.key, status="ok", seconds=0.2)
        crud.add_event(session, assessment_id=assessment_id, kind="cell", key=cell.key, message="ok")
        session.commit()


class _InApp(httpx.BaseTransport):
    """Sends the dashboard client's requests to the app in-process, through the TestClient."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(
            request.method, str(request.url), headers=dict(request.headers), content=request.read()
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def test_status_answers_304_until_something_changes(
    client: TestClient, project_headers, assessment, service_settings: Settings
) -> None:
    url = f"/assessments/{assessment['id']}/status"
    first = client.get(url, headers=project_headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    body = first.json()
    assert body["id"] == assessment["id"] and body["status"] == "queued"
    assert body["progress"]["cells_total"] == 4 and body["progress"]["cells_done"] == 0
    assert body["progress"]["eta_seconds"] == round(assessment["estimate"]["seconds"], 1)
    assert body["step"]["kind"] == "queued"
    # nothing changed: 304, no body, the same ETag; also for a list of tags and for '*'
    for if_none_match in (etag, f'W/"other", {etag}', etag.removeprefix("W/"), "*"):
        again = client.get(url, headers={**project_headers, "If-None-Match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b"" and again.headers["etag"] == etag
    assert client.get(url, headers={**project_headers, "If-None-Match": 'W/"other"'}).status_code == 200
    # the worker starts it: new status, new ETag
    with get_sessionmaker(service_settings)() as session:
        assert crud.mark_running(session, assessment_id=assessment["id"])
        session.commit()
    running = client.get(url, headers={**project_headers, "If-None-Match": etag})
    assert running.status_code == 200 and running.json()["status"] == "running"
    assert running.headers["etag"] != etag
    # a cell finishes: new counts, a later updated_at, the current step, a new ETag
    _finish_cell(service_settings, assessment["id"], 0)
    done = client.get(url, headers={**project_headers, "If-None-Match": running.headers["etag"]})
    assert done.status_code == 200
    state = done.json()
    assert state["progress"]["cells_done"] == 1 and state["progress"]["cells_by_status"] == {"ok": 1, "pending": 3}
    assert state["updated_at"] > running.json()["updated_at"]
    assert state["step"]["kind"] == "cell" and state["step"]["message"] == "ok"
    # the expected finish is extrapolated from the pace up to that cell; it does not move while nothing
    # changes, so time passing keeps the 304 (the countdown is eta_at minus now)
    assert state["eta_at"] is not None and state["eta_at"] >= state["updated_at"]
    time.sleep(1.1)
    assert client.get(url, headers={**project_headers, "If-None-Match": done.headers["etag"]}).status_code == 304
    # cancelled: a last change
    assert client.post(f"/assessments/{assessment['id']}/cancel", headers=project_headers).status_code == 200
    final = client.get(url, headers={**project_headers, "If-None-Match": done.headers["etag"]})
    assert final.status_code == 200 and final.json()["status"] == "cancelled"
    assert final.json()["progress"]["eta_seconds"] == 0.0


def test_status_matches_the_detail(client: TestClient, project_headers, assessment, service_settings) -> None:
    _finish_cell(service_settings, assessment["id"], 1)
    state = client.get(f"/assessments/{assessment['id']}/status", headers=project_headers).json()
    detail = client.get(f"/assessments/{assessment['id']}", headers=project_headers).json()
    assert state["status"] == detail["status"] and state["updated_at"] == detail["updated_at"]
    progress = dict(state["progress"])
    assert progress.pop("eta_seconds") == detail["progress"].pop("eta_seconds")
    assert progress == detail["progress"]


def test_dashboard_client_revalidates_with_the_etag(
    client: TestClient, project_headers, assessment, service_settings: Settings
) -> None:
    api = ApiClient(
        "http://testserver", token=project_headers["Authorization"].removeprefix("Bearer "), transport=_InApp(client)
    )
    first = api.get_status(assessment["id"])
    assert first["not_modified"] is False and first["etag"] and first["status"] == "queued"
    same = api.get_status(assessment["id"], previous=first)
    assert same["not_modified"] is True and same["progress"] == first["progress"]
    _finish_cell(service_settings, assessment["id"], 0)
    changed = api.get_status(assessment["id"], previous=same)
    assert changed["not_modified"] is False and changed["progress"]["cells_done"] == 1
    assert changed["etag"] != first["etag"]
    # the paged lists, every page followed
    assert [c["status"] for c in api.list_cells(assessment["id"])] == ["ok", "pending", "pending", "pending"]
    assert len(api.list_trainings(assessment["id"])) == assessment["n_trainings"]
    assert [c["key"] for c in api.list_cells(assessment["id"], status="ok")] == [
        c["key"] for c in api.list_cells(assessment["id"])[:1]
    ]
