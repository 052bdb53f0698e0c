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
    assert "cells" not in detail  # listed page by page: GET /assessments/{id}/cells
    cells = client.get(f"/assessments/{created['id']}/cells", headers=project_headers).json()
    assert {c["row"] for c in cells["data"]} == {"baseline", "outlier"} and cells["count"] == 2
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
    # the model's architecture replaces the spec's (a model built for the CSV's encoded features)
    n_features = dataset["summary"]["num_features"]
    model = upload_model(client, project_headers, *model_files(tmp_path, n_features=n_features)).json()
    spec = census_spec(dataset={"id": dataset["id"], "training_size": 100}, model={"id": model["id"]}, defenses=[])
    created = _submit(client, project_headers, spec)
    assert created["n_cells"] == 1


def _refused(client: TestClient, headers, spec) -> dict:
    """POST the spec, expect a 422, and check that nothing was stored or queued."""
    before = client.get("/assessments", headers=headers).json()["count"]
    response = client.post("/assessments", json={"spec": spec}, headers=headers)
    assert response.status_code == 422, response.text
    assert client.get("/assessments", headers=headers).json()["count"] == before
    return response.json()["detail"]


def test_preflight_uploaded_model_with_too_few_inputs_is_422(
    client: TestClient, project_headers, tmp_path: Path
) -> None:
    """A model with one input too few for the CSV's features after encoding (6 vs 7 without a sensitive column)
    is refused at submit, naming both numbers and the fix."""
    dataset = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income").json()
    n = dataset["summary"]["num_features"]
    model = upload_model(client, project_headers, *model_files(tmp_path, n_features=n - 1)).json()
    detail = _refused(
        client, project_headers, census_spec(dataset={"id": dataset["id"]}, model={"id": model["id"]}, defenses=[])
    )
    assert detail["field"] == "spec.model.id"
    message = detail["message"]
    assert message.startswith("model.weights: the first layer")
    assert f"expects {n - 1} input features" in message and f"'people.csv' has {n} after encoding" in message
    assert f"input_shape [{n}]" in message  # the fix
    # the class count is checked too: 3 outputs on a binary label
    model3 = upload_model(client, project_headers, *model_files(tmp_path, n_features=n, n_classes=3)).json()
    detail = _refused(
        client, project_headers, census_spec(dataset={"id": dataset["id"]}, model={"id": model3["id"]}, defenses=[])
    )
    assert (
        detail["field"] == "spec.model.id"
        and "has 3 outputs but dataset 'people.csv' has 2 classes" in (detail["message"])
    )


def test_preflight_model_config_and_architecture_are_checked(client: TestClient, project_headers) -> None:
    """Config bounds and an architecture that cannot take the dataset's inputs: 422 before anything is queued."""
    detail = _refused(
        client, project_headers, census_spec(model={"architecture": "linearnet", "config": {"hidden_layer_sizes": [0]}})
    )
    assert detail["field"].startswith("spec.model.config") and "hidden_layer_sizes" in detail["message"]
    wide = census_spec(model={"architecture": "linearnet", "config": {"hidden_layer_sizes": [64, 10_000_000]}})
    detail = _refused(client, project_headers, wide)
    assert detail["field"] == "spec.model.config.hidden_layer_sizes"
    assert "at most 65536" in detail["message"] and "10000000" in detail["message"]
    detail = _refused(client, project_headers, census_spec(model={"architecture": "cnn", "capacity": "m1"}))
    assert detail["field"] == "spec.model.architecture"
    assert "'census'" in detail["message"] and "linearnet for tabular data" in detail["message"]


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
    from amulet.cli._demo import demo_spec

    plan = plan_assessment(load_spec(demo_spec()))
    assert len(plan.cells) >= 4
