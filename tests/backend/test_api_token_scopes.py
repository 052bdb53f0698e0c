"""Scoped tokens (issue 16, privilege): read < submit < manage < admin, minting, cascading revocation,
the admin token that nothing but the operator can take away, and tokens of databases older than scopes.

The API runs on both database backends (the ``client`` fixture); start-up and migration tests build their
own service so they can stop, tamper with and restart it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_testing import ADMIN_TOKEN, census_spec, csv_bytes, make_settings, postgres_database, upload_dataset

Headers = dict[str, str]


def _bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def _mint(client: TestClient, headers: Headers, scope: str, name: str = "") -> tuple[dict[str, Any], Headers]:
    response = client.post("/tokens", json={"name": name or scope, "scope": scope}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scope"] == scope
    return body, _bearer(body["token"])


def _works(client: TestClient, headers: Headers) -> bool:
    status = client.get("/assessments", headers=headers).status_code
    assert status in (200, 401), status
    return status == 200


def _admin_id(client: TestClient, admin_headers: Headers) -> str:
    """The admin token's id: the minter of whatever the admin mints."""
    minted, _ = _mint(client, admin_headers, "read", "to find the admin's id")
    assert client.delete(f"/tokens/{minted['id']}", headers=admin_headers).status_code == 204
    return str(minted["minted_by"])


def _forbidden(response: Any, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert f"'{scope}' scope" in response.json()["detail"]


def test_project_first_token_is_manage_minted_by_the_admin(client: TestClient, admin_headers: Headers) -> None:
    created = client.post("/projects", json={"name": f"s-{uuid.uuid4().hex[:8]}"}, headers=admin_headers).json()
    first = created["token"]
    assert first["scope"] == "manage" and not first["is_admin"]
    assert first["project_id"] == created["id"]
    assert first["minted_by"] == _admin_id(client, admin_headers)


def test_read_token_reads_and_nothing_else(client: TestClient, project_headers: Headers) -> None:
    dataset = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income").json()
    _, read = _mint(client, project_headers, "read")
    assert client.get("/assessments", headers=read).status_code == 200
    assert client.get(f"/datasets/{dataset['id']}", headers=read).status_code == 200
    _forbidden(client.post("/assessments", json={"spec": census_spec()}, headers=read), "submit")
    _forbidden(upload_dataset(client, read, csv_bytes(), "people.csv", label="income"), "submit")
    assessment = client.post("/assessments", json={"spec": census_spec()}, headers=project_headers).json()
    _forbidden(client.post(f"/assessments/{assessment['id']}/cancel", headers=read), "submit")
    _forbidden(client.delete(f"/assessments/{assessment['id']}", headers=read), "submit")
    _forbidden(client.post("/tokens", json={"scope": "read"}, headers=read), "manage")
    _forbidden(client.get("/tokens", headers=read), "manage")
    # the refusals changed nothing
    assert client.get(f"/assessments/{assessment['id']}", headers=read).json()["status"] == "queued"


def test_submit_token_submits_cancels_deletes_but_cannot_mint_or_revoke(
    client: TestClient, project_headers: Headers
) -> None:
    _, submit = _mint(client, project_headers, "submit")
    sibling, sibling_headers = _mint(client, project_headers, "read")
    assert upload_dataset(client, submit, csv_bytes(), "people.csv", label="income").status_code == 201
    created = client.post("/assessments", json={"spec": census_spec()}, headers=submit)
    assert created.status_code == 202, created.text
    url = f"/assessments/{created.json()['id']}"
    assert client.post(f"{url}/cancel", headers=submit).json()["status"] == "cancelled"
    assert client.delete(url, headers=submit).status_code == 204
    # a token cannot mint a scope it does not hold, not even a lower one without 'manage'
    for scope in ("read", "submit", "manage"):
        _forbidden(client.post("/tokens", json={"scope": scope}, headers=submit), "manage")
    _forbidden(client.delete(f"/tokens/{sibling['id']}", headers=submit), "manage")
    assert _works(client, sibling_headers)


def test_no_token_mints_the_admin_scope(client: TestClient, project_headers: Headers, admin_headers: Headers) -> None:
    for headers in (project_headers, admin_headers):
        response = client.post("/tokens", json={"scope": "admin"}, headers=headers)
        assert response.status_code == 422
        assert "manage" in response.text  # the allowed values are named


def test_revoking_a_token_revokes_what_it_minted_transitively(client: TestClient, project_headers: Headers) -> None:
    leaked, leaked_headers = _mint(client, project_headers, "manage", "leaked")
    child, child_headers = _mint(client, leaked_headers, "manage", "child")
    grandchild, grandchild_headers = _mint(client, child_headers, "read", "grandchild")
    ci, ci_headers = _mint(client, leaked_headers, "submit", "ci")
    bystander, bystander_headers = _mint(client, project_headers, "submit", "bystander")
    assert grandchild["minted_by"] == child["id"] and child["minted_by"] == leaked["id"]
    assert all(_works(client, h) for h in (leaked_headers, child_headers, grandchild_headers, ci_headers))

    assert client.delete(f"/tokens/{leaked['id']}", headers=project_headers).status_code == 204
    for headers in (leaked_headers, child_headers, grandchild_headers, ci_headers):
        assert not _works(client, headers)
    assert _works(client, project_headers) and _works(client, bystander_headers)
    listed = {t["id"] for t in client.get("/tokens", headers=project_headers).json()["data"]}
    assert bystander["id"] in listed
    assert not listed & {leaked["id"], child["id"], grandchild["id"], ci["id"]}


def test_manage_token_manages_only_itself_and_what_it_minted(client: TestClient, project_headers: Headers) -> None:
    first_id = client.get("/tokens", headers=project_headers).json()["data"][0]["id"]
    a, a_headers = _mint(client, project_headers, "manage", "a")
    b, b_headers = _mint(client, project_headers, "manage", "b")
    a_child, _ = _mint(client, a_headers, "read", "a's")

    listed = client.get("/tokens", headers=a_headers).json()
    assert {t["id"] for t in listed["data"]} == {a["id"], a_child["id"]} and listed["count"] == 2
    for target in (b["id"], first_id):  # a sibling, and the token that minted a
        response = client.delete(f"/tokens/{target}", headers=a_headers)
        assert response.status_code == 403, response.text
        assert "minted" in response.json()["detail"]
    assert _works(client, b_headers) and _works(client, project_headers)
    # the first token minted both, so it manages both
    assert {a["id"], b["id"], a_child["id"]} <= {
        t["id"] for t in client.get("/tokens", headers=project_headers).json()["data"]
    }
    # a token may give itself up (and what it minted with it)
    assert client.delete(f"/tokens/{b['id']}", headers=b_headers).status_code == 204
    assert not _works(client, b_headers)


def test_admin_token_cannot_be_revoked_through_the_api(
    client: TestClient, admin_headers: Headers, project_headers: Headers
) -> None:
    admin_id = _admin_id(client, admin_headers)
    for headers in (project_headers, admin_headers):
        response = client.delete(f"/tokens/{admin_id}", headers=headers)
        assert response.status_code == 403, response.text
        assert "admin token cannot be revoked" in response.json()["detail"]
        assert "AMULET_ADMIN_TOKEN" in response.json()["detail"]
    assert _works(client, admin_headers)
    assert admin_id not in {t["id"] for t in client.get("/tokens", headers=admin_headers).json()["data"]}


def test_tokens_of_other_projects_stay_hidden(client: TestClient, admin_headers: Headers, project_headers) -> None:
    other = client.post("/projects", json={"name": f"o-{uuid.uuid4().hex[:8]}"}, headers=admin_headers).json()
    other_first = other["token"]
    assert client.delete(f"/tokens/{other_first['id']}", headers=project_headers).status_code == 404
    assert other_first["id"] not in {t["id"] for t in client.get("/tokens", headers=project_headers).json()["data"]}
    # minting into another project is the admin's alone
    response = client.post("/tokens", json={"project_id": other["id"]}, headers=project_headers)
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    minted = client.post("/tokens", json={"project_id": other["id"], "scope": "read"}, headers=admin_headers)
    assert minted.status_code == 201 and minted.json()["project_id"] == other["id"]
    unknown = client.post("/tokens", json={"project_id": uuid.uuid4().hex}, headers=admin_headers)
    assert unknown.status_code == 404


def test_token_list_is_paginated_and_bounded(client: TestClient, project_headers: Headers, admin_headers) -> None:
    minted = [_mint(client, project_headers, "read", f"page-{i}")[0]["id"] for i in range(5)]
    first = client.get("/tokens", params={"limit": 2}, headers=project_headers).json()
    assert len(first["data"]) == 2 and first["count"] == 6  # the first token and its five
    pages = [client.get("/tokens", params={"limit": 2, "offset": o}, headers=project_headers).json() for o in (0, 2, 4)]
    ids = [t["id"] for page in pages for t in page["data"]]
    assert len(ids) == len(set(ids)) == 6 and set(minted) <= set(ids)
    for query in ({"limit": 0}, {"limit": -1}, {"limit": 501}, {"offset": -1}, {"offset": 2**63}):
        response = client.get("/tokens", params=query, headers=project_headers)
        assert response.status_code == 422, (query, response.text)
    # the admin sees every project's tokens, never the admin tokens it cannot revoke
    everything = client.get("/tokens", params={"limit": 500}, headers=admin_headers).json()
    assert everything["count"] >= 6 and not any(t["is_admin"] for t in everything["data"])


# ------------------------------------------------------------------------------ start-up and old databases
def _fresh(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    if backend == "sqlite":
        return make_settings(tmp_path)
    context = postgres_database()
    url = context.__enter__()
    request.addfinalizer(lambda: context.__exit__(None, None, None))
    return make_settings(tmp_path, database_url=url)


BACKEND_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_startup_restores_a_revoked_or_deleted_admin_token(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import delete, update

    from backend.core.db import get_sessionmaker
    from backend.core.security import hash_token
    from backend.main import create_app
    from backend.models import ApiToken

    settings = _fresh(tmp_path, backend, request)
    admin = _bearer(ADMIN_TOKEN)
    with TestClient(create_app(settings)) as client:
        assert _works(client, admin)
        project = client.post("/projects", json={"name": "kept"}, headers=admin).json()
    for tamper in (
        update(ApiToken).where(ApiToken.token_hash == hash_token(ADMIN_TOKEN)).values(revoked_at=ApiToken.created_at),
        delete(ApiToken).where(ApiToken.token_hash == hash_token(ADMIN_TOKEN)),
    ):
        with get_sessionmaker(settings)() as session:  # what an older version's DELETE /tokens left behind
            session.execute(tamper)
            session.commit()
        with TestClient(create_app(settings)) as client:
            assert _works(client, admin), tamper
            assert client.get("/tokens", headers=admin).status_code == 200
            assert _works(client, _bearer(project["token"]["token"]))


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_tokens_of_an_old_database_keep_working_without_minting(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A database at the schema before scopes: its tokens read and submit after the upgrade, the admin
    still does everything, and only the admin (or a manage token it mints) mints."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from backend.core.db import ALEMBIC_INI, get_engine
    from backend.core.security import hash_token, token_display_prefix
    from backend.main import create_app

    settings = _fresh(tmp_path, backend, request)
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "alembic"))
    old_token = "amt_old-project-token-0123456789"
    with get_engine(settings).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        rows = [("p0", "default", ADMIN_TOKEN, True), ("p1", "legacy", old_token, False)]
        for i, (project_id, name, token, is_admin) in enumerate(rows):
            connection.execute(
                text("INSERT INTO projects (id, name, created_at) VALUES (:id, :name, CURRENT_TIMESTAMP)"),
                {"id": project_id, "name": name},
            )
            connection.execute(
                text(
                    "INSERT INTO api_tokens (id, project_id, name, token_hash, prefix, is_admin, created_at) "
                    "VALUES (:id, :project, 'old', :hash, :prefix, :admin, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": f"t{i}",
                    "project": project_id,
                    "hash": hash_token(token),
                    "prefix": token_display_prefix(token),
                    "admin": is_admin,
                },
            )
    old, admin = _bearer(old_token), _bearer(ADMIN_TOKEN)
    with TestClient(create_app(settings)) as client:  # start-up migrates to head
        assert _works(client, old)
        assert client.post("/assessments", json={"spec": census_spec()}, headers=old).status_code == 202
        _forbidden(client.post("/tokens", json={"scope": "read"}, headers=old), "manage")
        listed = client.get("/tokens", headers=admin).json()["data"]
        assert [(t["id"], t["scope"], t["minted_by"]) for t in listed] == [("t1", "submit", None)]
        manage = client.post("/tokens", json={"scope": "manage", "project_id": "p1"}, headers=admin).json()
        assert _mint(client, _bearer(manage["token"]), "read")[0]["project_id"] == "p1"
        assert client.delete("/tokens/t1", headers=admin).status_code == 204
        assert not _works(client, old)


def test_serve_demo_token_has_the_submit_scope_and_replaces_the_last_one(tmp_path: Path) -> None:
    from backend.demo import mint_demo_token
    from backend.main import create_app

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        first = _bearer(mint_demo_token(settings))
        assert client.post("/assessments", json={"spec": census_spec()}, headers=first).status_code == 202
        _forbidden(client.post("/tokens", json={"scope": "read"}, headers=first), "manage")
        second = _bearer(mint_demo_token(settings))
        assert _works(client, second) and not _works(client, first)
        demo = [t for t in client.get("/tokens", headers=_bearer(ADMIN_TOKEN)).json()["data"] if "demo" in t["name"]]
        assert [t["scope"] for t in demo] == ["submit"]


def test_a_token_whose_minter_is_revoked_is_refused_even_if_the_cascade_missed_it(
    client: TestClient, project_headers: Headers, service_settings: Any
) -> None:
    """A token minted while its minter's revocation commits is not in that revocation's cascade; the minting
    chain checked at each request refuses it anyway."""
    from sqlalchemy import update

    from backend.core.db import get_sessionmaker
    from backend.models import ApiToken, utcnow

    parent, parent_headers = _mint(client, project_headers, "manage", "parent")
    _, child_headers = _mint(client, parent_headers, "manage", "child")
    _, grandchild_headers = _mint(client, child_headers, "read", "grandchild")
    with get_sessionmaker(service_settings)() as session:  # the parent alone, as a racing revocation leaves it
        session.execute(update(ApiToken).where(ApiToken.id == parent["id"]).values(revoked_at=utcnow()))
        session.commit()
    assert not _works(client, child_headers) and not _works(client, grandchild_headers)
    assert _works(client, project_headers)
