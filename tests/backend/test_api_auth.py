"""Tokens, projects, health and catalog on both database backends."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_reports_database_and_broker(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"]


def test_no_token_is_401(client: TestClient) -> None:
    for path in ("/models", "/datasets", "/assessments", "/tokens", "/datasets/builtin"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/assessments", headers={"Authorization": "Bearer amt_not-a-token"}).status_code == 401


def test_tokens_create_list_revoke(client: TestClient, project_headers: dict[str, str]) -> None:
    created = client.post("/tokens", json={"name": "ci"}, headers=project_headers)
    assert created.status_code == 201, created.text
    token = created.json()
    ci_headers = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/assessments", headers=ci_headers).status_code == 200
    listed = client.get("/tokens", headers=project_headers).json()
    assert token["id"] in {t["id"] for t in listed["data"]}
    assert all("token" not in t for t in listed["data"])  # values are never shown again
    assert client.delete(f"/tokens/{token['id']}", headers=project_headers).status_code == 204
    assert client.get("/assessments", headers=ci_headers).status_code == 401
    assert client.delete(f"/tokens/{token['id']}", headers=project_headers).status_code == 404


def test_tokens_are_stored_hashed(client: TestClient, project_headers: dict[str, str], service_settings) -> None:
    from sqlalchemy import select

    from backend.core.db import get_sessionmaker
    from backend.core.security import hash_token
    from backend.models import ApiToken

    plaintext = client.post("/tokens", json={}, headers=project_headers).json()["token"]
    with get_sessionmaker(service_settings)() as session:
        hashes = set(session.scalars(select(ApiToken.token_hash)))
    assert plaintext not in hashes
    assert hash_token(plaintext) in hashes


def test_another_projects_token_cannot_be_revoked(client: TestClient, admin_headers, project_headers) -> None:
    other = client.post("/tokens", json={}, headers=admin_headers).json()
    assert client.delete(f"/tokens/{other['id']}", headers=project_headers).status_code == 404


def test_only_admin_creates_projects(client: TestClient, project_headers: dict[str, str]) -> None:
    assert client.post("/projects", json={"name": "nope"}, headers=project_headers).status_code == 403


def test_catalog_lists_registry(client: TestClient) -> None:
    catalog = client.get("/catalog").json()
    assert isinstance(catalog, dict) and catalog
    text = str(catalog)
    assert "evasion" in text and "outlier_removal" in text


def test_builtin_datasets(client: TestClient, project_headers: dict[str, str]) -> None:
    names = {d["name"] for d in client.get("/datasets/builtin", headers=project_headers).json()}
    assert {"census", "fmnist"} <= names


def test_openapi_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/models", "/datasets", "/assessments", "/assessments/{assessment_id}/report.{fmt}", "/health"):
        assert path in schema["paths"]
