"""The signed bundle's and the signing key's answers before reports exist (the happy path runs end to end in
tests/e2e/test_e2e_service.py, through a real worker)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_testing import census_spec


def test_bundle_of_a_queued_assessment_is_a_409_that_says_why(client: TestClient, project_headers) -> None:
    created = client.post("/assessments", json={"spec": census_spec()}, headers=project_headers)
    assert created.status_code == 202, created.text
    response = client.get(f"/assessments/{created.json()['id']}/bundle.zip", headers=project_headers)
    assert response.status_code == 409
    assert "exists once reports are rendered" in response.json()["detail"]


def test_bundle_needs_a_token_and_stays_inside_its_project(client: TestClient, project_headers, admin_headers) -> None:
    created = client.post("/assessments", json={"spec": census_spec()}, headers=project_headers).json()
    assert client.get(f"/assessments/{created['id']}/bundle.zip").status_code == 401
    other = client.post("/projects", json={"name": "other-signing"}, headers=admin_headers).json()
    foreign = {"Authorization": f"Bearer {other['token']['token']}"}
    assert client.get(f"/assessments/{created['id']}/bundle.zip", headers=foreign).status_code == 404
    assert client.get("/assessments/no-such-id/bundle.zip", headers=project_headers).status_code == 404


def test_signing_key_is_public_pem_with_the_manifest_key_id(client: TestClient, service_settings) -> None:
    from amulet.assess._signing import load_signing_key

    response = client.get("/signing-key")
    if not service_settings.resolved_signing_key_path.is_file():
        assert response.status_code == 404 and "No report has been signed" in response.json()["detail"]
        load_signing_key(service_settings.resolved_signing_key_path)  # what the worker does on its first report
        response = client.get("/signing-key")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["algorithm"] == "Ed25519" and len(body["key_id"]) == 16
    assert body["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
