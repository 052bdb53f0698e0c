"""No 5xx on any input (issue 16 audit): Python's JSON parser reads ``NaN``, ``Infinity`` and ``1e400`` in a
request body, which no JSON answer and no PostgreSQL JSON column can hold. Each such request is a 422 naming
the field, on both database backends."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec, model_files

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/projects", '{"name": 1e400}', "name"),
        ("/tokens", '{"scope": Infinity}', "scope"),
        ("/assessments", '{"spec": NaN}', "spec"),
        ("/assessments", '{"spec": {}, "name": -Infinity}', "name"),
    ],
)
def test_malformed_requests_quoting_non_finite_numbers_are_422(
    client: TestClient, admin_headers, path: str, body: str, field: str
) -> None:
    # FastAPI's own 422 quotes the input back; it used to fail to serialise (500)
    response = client.post(path, content=body, headers={**admin_headers, **JSON})
    assert response.status_code == 422, response.text
    problem = response.json()["detail"][0]
    assert problem["loc"][-1] == field
    assert problem["input"] in ("Infinity", "-Infinity", "NaN")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (census_spec(dataset={"name": "census", "training_size": float("inf"), "test_size": 300}), "training_size"),
        (census_spec(dataset={"name": "census", "training_size": 600, "test_size": float("nan")}), "test_size"),
        (census_spec(description="ok", model_card={"note": [1.0, float("-inf")]}), "model_card.note[1]"),
    ],
    ids=["training-size-infinity", "test-size-nan", "nested-minus-infinity"],
)
def test_specs_holding_non_finite_numbers_are_422(client: TestClient, project_headers, spec, field: str) -> None:
    # training_size Infinity reached the data loader (OverflowError, 500); any NaN stored in a JSON column
    # would break PostgreSQL's insert and every later answer quoting the spec
    response = client.post("/assessments", content=json.dumps({"spec": spec}), headers={**project_headers, **JSON})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"].endswith(field)
    assert "finite number" in detail["message"]


def test_model_spec_json_with_nan_is_422(client: TestClient, project_headers, tmp_path) -> None:
    spec, weights = model_files(tmp_path)
    for bad in (b"NaN", b"1e400"):
        text = spec.replace(b'"format_version": 1', b'"format_version": 1, "note": ' + bad)
        assert text != spec
        files = {"spec": ("model.json", text, "application/json"), "weights": ("w.safetensors", weights)}
        response = client.post("/models", files=files, headers=project_headers)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["field"] == "spec" and "finite number" in detail["message"]
