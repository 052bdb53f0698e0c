"""Assessment submission (validate, commit, queue), progress from SQL, cancel, and project isolation."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from service_testing import census_spec, csv_bytes, model_files, upload_dataset, upload_model


def _submit(client: TestClient, headers, spec) -> dict:
    response = client.post("/assessments", json={"spec": spec}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def test_submit_stores_plan_and_queues(client: TestClient, project_headers) -> None:
    created = _submit(client, project_headers, census_spec())
    assert created["status"] == "queued"
    assert created["n_cells"] == 2 and created["n_trainings"] == 2
    detail = client.get(f"/assessments/{created['id']}", headers=project_headers).json()
    assert detail["progress"]["cells_total"] == 2
    assert detail["progress"]["cells_by_status"] == {"pending": 2}
    assert {c["row"] for c in detail["cells"]} == {"baseline", "outlier"}
    assert detail["events"][0]["kind"] == "queued"
    listed = client.get("/assessments", headers=project_headers).json()
    assert created["id"] in {a["id"] for a in listed["data"]}


def test_invalid_spec_is_422_naming_the_field(client: TestClient, project_headers) -> None:
    spec = census_spec(defenses=[{"defense": "no_such_defense"}])
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "spec.defenses[0].stack[0].defense"
    assert "outlier_removal" in detail["message"]  # lists the allowed values


def test_server_paths_are_refused(client: TestClient, project_headers) -> None:
    spec = census_spec(dataset={"path": "/etc/passwd.csv", "label": "x"})
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "spec.dataset.path"
    spec = census_spec(model={"architecture": "linearnet", "weights": "/tmp/x.safetensors"})
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "spec.model.weights"


def test_uploaded_ids_are_resolved(client: TestClient, project_headers, tmp_path: Path) -> None:
    dataset = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income", sensitive="sex").json()
    spec = census_spec(dataset={"id": dataset["id"], "training_size": 100})
    created = _submit(client, project_headers, spec)
    assert created["n_cells"] == 2
    # the model's architecture replaces the spec's
    model = upload_model(client, project_headers, *model_files(tmp_path)).json()
    spec = census_spec(model={"id": model["id"]}, defenses=[])
    created = _submit(client, project_headers, spec)
    assert created["n_cells"] == 1


def test_cancel(client: TestClient, project_headers) -> None:
    created = _submit(client, project_headers, census_spec())
    url = f"/assessments/{created['id']}"
    assert client.get(f"{url}/report.html", headers=project_headers).status_code == 409
    response = client.post(f"{url}/cancel", headers=project_headers)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client.post(f"{url}/cancel", headers=project_headers).status_code == 409
    assert client.get(f"{url}/report.html", headers=project_headers).status_code == 404


def test_other_projects_ids_are_404(client: TestClient, admin_headers, project_headers, tmp_path: Path) -> None:
    # project A (project_headers) owns one of everything
    dataset = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income").json()
    model = upload_model(client, project_headers, *model_files(tmp_path)).json()
    assessment = _submit(client, project_headers, census_spec())
    other = client.post("/projects", json={"name": f"b-{assessment['id'][:8]}"}, headers=admin_headers).json()
    b_headers = {"Authorization": f"Bearer {other['token']['token']}"}
    a_id = assessment["id"]
    for method, path in [
        ("get", f"/assessments/{a_id}"),
        ("get", f"/assessments/{a_id}/results"),
        ("get", f"/assessments/{a_id}/report.html"),
        ("get", f"/assessments/{a_id}/report.pdf"),
        ("get", f"/assessments/{a_id}/report.json"),
        ("get", f"/assessments/{a_id}/report.xml"),
        ("post", f"/assessments/{a_id}/cancel"),
        ("get", f"/models/{model['id']}"),
        ("get", f"/datasets/{dataset['id']}"),
    ]:
        response = getattr(client, method)(path, headers=b_headers)
        assert response.status_code == 404, (path, response.status_code)
    for path in ("/assessments", "/models", "/datasets"):
        assert client.get(path, headers=b_headers).json()["count"] == 0
    # B cannot reference A's uploads either
    spec = census_spec(dataset={"id": dataset["id"]})
    response = client.post("/assessments", json={"spec": spec}, headers=b_headers)
    assert response.status_code == 422 and response.json()["detail"]["field"] == "spec.dataset.id"
    spec = census_spec(model={"id": model["id"]})
    response = client.post("/assessments", json={"spec": spec}, headers=b_headers)
    assert response.status_code == 422 and response.json()["detail"]["field"] == "spec.model.id"
    # and A still sees its own
    assert client.get(f"/assessments/{a_id}", headers=project_headers).status_code == 200


def test_demo_spec_is_valid() -> None:
    """`amulet serve --demo` seeds this spec: it must validate and plan."""
    from amulet.assess import load_spec, plan_assessment
    from amulet.cli._service import _demo_spec

    plan = plan_assessment(load_spec(_demo_spec()))
    assert len(plan.cells) >= 4
