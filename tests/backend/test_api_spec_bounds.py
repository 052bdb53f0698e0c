"""Bounded work, continued (issue 16): a parameter sweep counts every row it makes before anything is
expanded, and every text a client sends that lands in a bounded database column is refused (422 naming the
field) or cut, never a 5xx (PostgreSQL refuses a value longer than its column; SQLite stores it)."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from service_testing import census_spec, csv_bytes, model_files, upload_dataset, upload_model


def _refused(client: TestClient, headers, spec) -> dict:
    response = client.post("/assessments", json={"spec": spec}, headers=headers)
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def _sweep(n: int) -> dict:
    """adversarial_training with three parameters swept over ``n`` values each: n**3 rows from a few hundred bytes."""
    params = {
        "epsilon": [round(0.001 * (i + 1), 4) for i in range(n)],
        "iterations": list(range(1, n + 1)),
        "step_size": [round(0.001 * (i + 1), 4) for i in range(n)],
    }
    return {"defense": "adversarial_training", "params": params}


def test_swept_rows_count_against_the_row_limit_before_expanding(client: TestClient, project_headers) -> None:
    # 10 x 10 x 10 = 1,000 rows (1,001 cells, under the cell limit) from one defenses entry
    detail = _refused(client, project_headers, census_spec(defenses=[_sweep(10)]))
    assert detail["field"] == "spec.defenses"
    assert "1,000 defense rows" in detail["message"] and "AMULET_MAX_DEFENSE_ROWS" in detail["message"]
    # 60**3 = 216,000 rows: refused by the count, not by the planner after expanding them (that took 105 s, +900 MB)
    detail = _refused(client, project_headers, census_spec(defenses=[_sweep(60)]))
    assert detail["field"] == "spec.defenses" and "216,000 defense rows" in detail["message"]
    # stacked sweeps multiply
    stack = {"name": "stacked", "stack": [_sweep(2), {"defense": "outlier_removal", "params": {"percent": [1, 2, 3]}}]}
    detail = _refused(client, project_headers, census_spec(defenses=[stack] * 3, seeds=[0]))
    assert "72 defense rows" in detail["message"]  # 3 x (8 x 3)


def test_a_sweep_within_the_limits_is_planned_row_by_row(client: TestClient, project_headers) -> None:
    spec = census_spec(defenses=[{"defense": "outlier_removal", "params": {"percent": [1, 2, 3]}}], seeds=[0])
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 202, response.text
    assert response.json()["n_cells"] == 4  # baseline + three swept rows, one risk, one seed


def test_long_row_names_are_422(client: TestClient, project_headers) -> None:
    row = {"name": "r" * 300, "defense": "outlier_removal", "params": {}}
    detail = _refused(client, project_headers, census_spec(defenses=[row]))
    assert detail["field"] == "spec.defenses[0].name" and "AMULET_MAX_NAME_LENGTH" in detail["message"]
    # a name within the limit whose swept values make the row's name longer than the database stores
    row = {"name": "r" * 195, "defense": "outlier_removal", "params": {"percent": [1, 2]}}
    detail = _refused(client, project_headers, census_spec(defenses=[row]))
    assert detail["field"] == "spec.defenses"
    assert "shorter 'name'" in detail["message"] and "200" in detail["message"]


def test_dataset_label_longer_than_its_column_is_422(client: TestClient, project_headers) -> None:
    label = "L" * 300
    response = upload_dataset(client, project_headers, csv_bytes(label=label), "people.csv", label=label)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == "label"


def test_long_upload_file_names_are_cut_to_the_name_column(client: TestClient, project_headers, tmp_path) -> None:
    filename = "f" * 300 + ".csv"
    dataset = upload_dataset(client, project_headers, csv_bytes(), filename, label="income")
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["name"] == filename[:200]
    spec, weights = model_files(tmp_path)
    files = {"spec": ("model.json", spec, "application/json"), "weights": ("w" * 300 + ".safetensors", weights)}
    model = client.post("/models", files=files, headers=project_headers)
    assert model.status_code == 201, model.text
    assert model.json()["name"] == ("w" * 300)[:200]
    assert upload_model(client, project_headers, spec, weights, name="n" * 201).status_code == 422


def test_project_name_of_the_longest_allowed_length(client: TestClient, admin_headers) -> None:
    name = uuid.uuid4().hex + "p" * 168  # 200 characters, the most a project name may have
    created = client.post("/projects", json={"name": name}, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert len(created.json()["token"]["name"]) <= 200 and created.json()["token"]["name"].endswith("(first token)")


def test_model_parameters_are_bounded_at_submit(client: TestClient, project_headers) -> None:
    # two layers of the widest allowed width: about 4.3 billion parameters, counted on the meta device
    spec = census_spec(model={"architecture": "linearnet", "config": {"hidden_layer_sizes": [65_536, 65_536]}})
    detail = _refused(client, project_headers, spec)
    assert detail["field"] == "spec.model.config"
    assert "AMULET_MAX_MODEL_PARAMETERS" in detail["message"] and "500,000,000" in detail["message"]


def test_uploaded_model_parameters_follow_the_setting(tmp_path) -> None:
    from service_testing import ADMIN_TOKEN, make_settings

    from backend.main import create_app

    # Counted on the meta device before the weights are loaded into a real model: a 2 KB spec can describe
    # billions of parameters (here a small model and a small limit stand for that).
    settings = make_settings(tmp_path / "home", max_model_parameters=40)
    spec, weights = model_files(tmp_path, hidden=[4])  # 6*4 + 4 (linear), 4 + 4 (batch norm), 4*2 + 2: 46
    with TestClient(create_app(settings)) as client:
        response = upload_model(client, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, spec, weights)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "spec"
    assert "46 parameters" in detail["message"] and "AMULET_MAX_MODEL_PARAMETERS" in detail["message"]


def test_counted_rows_match_the_expanded_rows() -> None:
    from amulet.assess import DefenseRow
    from amulet.assess._spec import count_expanded_rows, expand_row

    rows = [
        {"defense": "outlier_removal", "params": {}},
        {"defense": "outlier_removal", "params": {"percent": [1, 2, 3]}},
        _sweep(3),
        {"name": "stacked", "stack": [_sweep(2), {"defense": "outlier_removal", "params": {"percent": [1, 2]}}]},
        {"defense": "dp_sgd", "params": {"noise_multiplier": [0.5, 1.0], "accountant": ["rdp", "prv"]}},
    ]
    for raw in rows:
        assert count_expanded_rows(raw) == len(expand_row(DefenseRow.model_validate(raw))), raw


def test_request_name_is_bounded_like_the_spec_name(client: TestClient, project_headers) -> None:
    response = client.post("/assessments", json={"spec": census_spec(), "name": "n" * 201}, headers=project_headers)
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert problem["loc"] == ["body", "name"] and "200" in problem["msg"]
