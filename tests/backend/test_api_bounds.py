"""Bounded work: a submitted assessment past the operator's limits (cells, seeds, rows, risks, model size,
text fields) is a 422 at submit that names the limit and its setting, before anything is loaded or planned."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec, make_settings, model_files, upload_model

from amulet.settings import Settings


def _refused(client: TestClient, headers, spec, **body) -> dict:
    response = client.post("/assessments", json={"spec": spec, **body}, headers=headers)
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def _evasion(i: int) -> dict:
    return {"risk": "evasion", "params": {"epsilon": round(0.01 * (i + 1), 2)}}


def _outlier(i: int) -> dict:
    return {"name": f"outlier-{i}", "defense": "outlier_removal", "params": {}}


def test_too_many_seeds_names_the_setting(client: TestClient, project_headers) -> None:
    detail = _refused(client, project_headers, census_spec(seeds=list(range(21))))
    assert detail["field"] == "spec.seeds"
    assert "20" in detail["message"] and "AMULET_MAX_SEEDS" in detail["message"]


def test_too_many_defense_rows_and_risks(client: TestClient, project_headers) -> None:
    detail = _refused(client, project_headers, census_spec(defenses=[_outlier(i) for i in range(65)]))
    assert detail["field"] == "spec.defenses" and "AMULET_MAX_DEFENSE_ROWS" in detail["message"]
    detail = _refused(client, project_headers, census_spec(risks=[_evasion(i) for i in range(65)]))
    assert detail["field"] == "spec.risks" and "AMULET_MAX_RISK_COLUMNS" in detail["message"]


def test_too_many_cells_is_refused_before_planning(client: TestClient, project_headers) -> None:
    # 20 seeds x (1 + 64 rows) x 4 risks = 5,200 cells: each list is within its own limit, the product is not.
    spec = census_spec(
        seeds=list(range(20)), defenses=[_outlier(i) for i in range(64)], risks=[_evasion(i) for i in range(4)]
    )
    detail = _refused(client, project_headers, spec)
    assert detail["field"] == "spec"
    assert "5,200 cells" in detail["message"] and "AMULET_MAX_ASSESSMENT_CELLS" in detail["message"]


def test_long_name_and_description_are_refused(client: TestClient, project_headers) -> None:
    detail = _refused(client, project_headers, census_spec(name="n" * 10_000))
    assert detail["field"] == "spec.name" and "AMULET_MAX_NAME_LENGTH" in detail["message"]
    detail = _refused(client, project_headers, census_spec(description="d" * 30_000))
    assert detail["field"] == "spec.description" and "AMULET_MAX_DESCRIPTION_LENGTH" in detail["message"]


@pytest.mark.parametrize(
    ("layers", "words"),
    [
        ([-4], "positive integers"),
        ([1e9], "positive integers"),
        ([1e5, 1e5], "positive integers"),
        ([100_000, 100_000], "AMULET_MAX_LAYER_WIDTH"),
        ([4] * 10_000, "AMULET_MAX_MODEL_LAYERS"),
    ],
    ids=["negative", "float-1e9", "floats", "too-wide", "ten-thousand-layers"],
)
def test_model_layers_are_bounded_at_submit(client: TestClient, project_headers, layers, words: str) -> None:
    spec = census_spec(model={"architecture": "linearnet", "config": {"hidden_layer_sizes": layers}})
    detail = _refused(client, project_headers, spec)
    assert detail["field"] == "spec.model.config.hidden_layer_sizes"
    assert words in detail["message"]


def test_uploaded_model_spec_with_ten_thousand_layers_is_refused_before_building(
    client: TestClient, project_headers, tmp_path
) -> None:
    import json

    spec_bytes, weights = model_files(tmp_path)
    spec = json.loads(spec_bytes)
    spec.pop("weights_sha256")
    spec["config"]["hidden_layer_sizes"] = [4] * 10_000  # an 18 KB spec; building it takes tens of seconds
    response = upload_model(client, project_headers, json.dumps(spec).encode(), weights)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "spec.config.hidden_layer_sizes"
    assert "10,000 layers" in detail["message"] and "AMULET_MAX_MODEL_LAYERS" in detail["message"]


def test_bounds_follow_the_settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMULET_MAX_SEEDS", "7")
    monkeypatch.setenv("AMULET_MAX_ASSESSMENT_CELLS", "11")
    assert Settings().max_seeds == 7 and Settings().max_assessment_cells == 11
    from backend.main import create_app

    settings = make_settings(tmp_path, max_seeds=2, max_assessment_cells=3)
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {settings.admin_token}"}
        detail = _refused(client, headers, census_spec(seeds=[0, 1, 2]))
        assert detail["field"] == "spec.seeds" and "the limit of 2 " in detail["message"]
        detail = _refused(client, headers, census_spec(seeds=[0, 1]))  # (1 + 1 row) x 1 risk x 2 seeds = 4 cells
        assert "4 cells" in detail["message"] and "the limit of 3 " in detail["message"]
        accepted = client.post("/assessments", json={"spec": census_spec(seeds=[0])}, headers=headers)
        assert accepted.status_code == 202, accepted.text
