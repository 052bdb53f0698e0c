"""No GET grows with the assessment: the detail carries counts and the first errors; the cells, trainings and
cell results are listed page by page (``limit`` 1..500, ``offset`` 0..10^9) with their total count.

Finished units are written with the worker's own crud calls, as the worker records them.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec

from amulet.settings import Settings
from backend import crud
from backend.api.routes.assessments import MAX_DETAIL_ERRORS
from backend.core.db import get_sessionmaker

#: (1 + 1 row) x 2 risks x 20 seeds = 80 cells, 40 trainings.
SPEC = census_spec(risks=[{"risk": "evasion"}, {"risk": "poisoning"}], seeds=list(range(20)))


@pytest.fixture
def assessment(client: TestClient, project_headers) -> dict:
    response = client.post("/assessments", json={"spec": SPEC}, headers=project_headers)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["n_cells"] == 80 and created["n_trainings"] == 40
    return created


def _pages(client: TestClient, headers: dict[str, str], url: str, limit: int, **params: str) -> tuple[list, int]:
    items: list = []
    counts = set()
    while True:
        response = client.get(url, params={"limit": limit, "offset": len(items), **params}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= limit
        counts.add(page["count"])
        items += page["data"]
        if len(page["data"]) < limit:
            assert len(counts) == 1
            return items, counts.pop()


def test_cells_and_trainings_are_listed_page_by_page(client: TestClient, project_headers, assessment) -> None:
    url = f"/assessments/{assessment['id']}"
    detail = client.get(url, headers=project_headers).json()
    assert "cells" not in detail and "trainings" not in detail
    assert detail["progress"]["cells_total"] == 80 and detail["progress"]["trainings_total"] == 40
    cells, count = _pages(client, project_headers, f"{url}/cells", 30)
    assert count == len(cells) == 80
    assert len({c["key"] for c in cells}) == 80  # no cell twice, none skipped
    # plan order: row-major, then risk, then seed
    assert [(c["row"], c["risk"], c["seed"]) for c in cells] == [
        (row, risk, seed) for row in ("baseline", "outlier") for risk in ("evasion", "poisoning") for seed in range(20)
    ]
    trainings, count = _pages(client, project_headers, f"{url}/trainings", 7)
    assert count == len(trainings) == 40 and len({t["key"] for t in trainings}) == 40
    # one page of everything equals the pages stitched together
    whole = client.get(f"{url}/cells", params={"limit": 500}, headers=project_headers).json()
    assert whole["data"] == cells
    # past the end: an empty page, still the total
    end = client.get(f"{url}/cells", params={"offset": 1_000_000_000}, headers=project_headers).json()
    assert end == {"data": [], "count": 80}


def test_cell_pages_carry_metrics_and_filter_by_status(
    client: TestClient, project_headers, assessment, service_settings: Settings
) -> None:
    url = f"/assessments/{assessment['id']}"
    with get_sessionmaker(service_settings)() as session:
        keys = [c.key for c in crud.list_cells(session, assessment_id=assessment["id"])]
        for i, key in enumerate(keys[:12]):
            result = {"key": key, "status": "ok", "metrics": {"accuracy": i / 100}, "seconds": 0.5}
            crud.upsert_cell(
                session,
                assessment_id=assessment["id"],
                key=key,
                status="ok",
                seconds=0.5,
                metrics={"accuracy": i / 100},
                result=result,
            )
        session.commit()
    ok, count = _pages(client, project_headers, f"{url}/cells", 5, status="ok")
    assert count == 12 and [c["key"] for c in ok] == keys[:12]
    assert [c["metrics"] for c in ok] == [{"accuracy": i / 100} for i in range(12)]
    pending = client.get(f"{url}/cells", params={"status": "pending", "limit": 1}, headers=project_headers).json()
    assert pending["count"] == 68 and pending["data"][0]["metrics"] == {}
    # the cell results: only finished cells, the engine's result as stored, paged the same way
    results, count = _pages(client, project_headers, f"{url}/results", 5)
    assert count == 12 and [r["key"] for r in results] == keys[:12]
    assert results[3]["metrics"] == {"accuracy": 0.03}
    page = client.get(f"{url}/results", params={"limit": 1}, headers=project_headers).json()
    assert page["status"] == "queued" and page["count"] == 12


def test_detail_lists_the_first_errors_and_counts_them_all(
    client: TestClient, project_headers, assessment, service_settings: Settings
) -> None:
    with get_sessionmaker(service_settings)() as session:
        for cell in crud.list_cells(session, assessment_id=assessment["id"])[:60]:
            crud.upsert_cell(
                session, assessment_id=assessment["id"], key=cell.key, status="error", reason=f"boom {cell.seed}"
            )
        session.commit()
    detail = client.get(f"/assessments/{assessment['id']}", headers=project_headers).json()
    assert detail["errors_total"] == 60 and len(detail["errors"]) == MAX_DETAIL_ERRORS
    assert detail["errors"][0].startswith("cell c.baseline.evasion.pgd.s0.") and detail["errors"][0].endswith("boom 0")
    assert detail["progress"]["cells_done"] == 60 and detail["progress"]["cells_by_status"] == {
        "error": 60,
        "pending": 20,
    }
    # every error is still reachable: the cells endpoint pages through them
    errors, count = _pages(client, project_headers, f"/assessments/{assessment['id']}/cells", 500, status="error")
    assert count == 60 and all(c["reason"].startswith("boom") for c in errors)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"offset": -1},
        {"offset": 1_000_000_001},
        {"offset": 9223372036854775808},
        {"limit": "x"},
    ],
)
def test_out_of_range_pages_are_422(client: TestClient, project_headers, assessment, params) -> None:
    for part in ("cells", "trainings", "results"):
        response = client.get(f"/assessments/{assessment['id']}/{part}", params=params, headers=project_headers)
        assert response.status_code == 422, (part, params, response.text)
        assert response.json()["detail"][0]["loc"][-1] == next(iter(params))


def test_other_projects_cannot_list(client: TestClient, admin_headers, assessment) -> None:
    other = client.post("/projects", json={"name": f"pg-{assessment['id'][:8]}"}, headers=admin_headers).json()
    b_headers = {"Authorization": f"Bearer {other['token']['token']}"}
    for part in ("cells", "trainings", "results", "status"):
        response = client.get(f"/assessments/{assessment['id']}/{part}", headers=b_headers)
        assert response.status_code == 404, (part, response.text)


def test_filtering_by_an_unknown_status_is_refused_naming_the_field(
    client: TestClient, project_headers, assessment
) -> None:
    queued = client.get("/assessments", params={"status": "queued"}, headers=project_headers)
    assert queued.status_code == 200 and assessment["id"] in [a["id"] for a in queued.json()["data"]]
    response = client.get("/assessments", params={"status": "done"}, headers=project_headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "status" and "'done'" in detail["message"] and "succeeded" in detail["message"]
    cells_url = f"/assessments/{assessment['id']}/cells"
    pending = client.get(cells_url, params={"status": "pending"}, headers=project_headers)
    assert pending.status_code == 200 and pending.json()["count"] == 80
    response = client.get(cells_url, params={"status": "done"}, headers=project_headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "status" and "not_run" in detail["message"]
