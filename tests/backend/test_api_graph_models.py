"""Exported models of any architecture through ``POST /models`` (field ``model``: ``.pt2`` or ``.onnx``) and
``POST /assessments``: the response's format, input shape, classes, parameters and SHA-256; hostile files
refused with 415/422 and their canary never appears; a model that does not fit the dataset refused at submit.

The models are exported in the test from small torch modules (graph_models.py). Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from graph_models import (
    CreatesFile,
    custom_op_pt2,
    export_pt2,
    external_data_onnx,
    n_parameters,
    onnx_file,
    pickled_member_pt2,
    pt2_file,
    residual_mlp,
    upload_graph,
)
from service_testing import census_spec, csv_bytes, model_files, upload_dataset, upload_model


def _uploads(settings) -> set[Path]:
    root = settings.resolved_artifact_dir / "uploads"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _refused(client: TestClient, headers, settings, path: Path, statuses: tuple[int, ...]) -> dict:
    """Upload ``path``: a refusal with one of ``statuses`` naming 'model' and the export command; nothing kept."""
    before = _uploads(settings)
    response = upload_graph(client, headers, path)
    assert response.status_code in statuses, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "model"
    assert "amulet export-model" in detail["message"]
    assert _uploads(settings) == before  # nothing of the refused upload is kept
    return detail


# ------------------------------------------------------------------------------------------------------ upload
def test_pt2_upload_shows_format_shape_classes_parameters(client: TestClient, project_headers, tmp_path: Path) -> None:
    model = residual_mlp(6, 3, seed=1)
    path = export_pt2(model, tmp_path / "resmlp.pt2", (6,))
    response = upload_graph(client, project_headers, path, name="resmlp")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["architecture"], body["weights_format"]) == ("pt2", "graph", "pt2")
    assert body["input_shape"] == [6] and body["num_classes"] == 3
    assert body["num_parameters"] == n_parameters(model) == body["n_parameters"]
    assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert body["name"] == "resmlp"
    again = client.get(f"/models/{body['id']}", headers=project_headers).json()
    assert (again["format"], again["input_shape"], again["num_classes"]) == ("pt2", [6], 3)
    listed = client.get("/models", headers=project_headers).json()["data"]
    assert any(m["id"] == body["id"] and m["num_parameters"] == n_parameters(model) for m in listed)


def test_onnx_upload_shows_format_shape_classes_parameters(client: TestClient, project_headers, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    model = residual_mlp(6, 2, seed=2)
    path = onnx_file(tmp_path, n_features=6, n_classes=2, seed=2)
    response = upload_graph(client, project_headers, path)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["input_shape"], body["num_classes"]) == ("onnx", [6], 2)
    assert body["num_parameters"] == n_parameters(model)
    assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_spec_and_weights_upload_still_works_and_shows_its_shape(
    client: TestClient, project_headers, tmp_path: Path
) -> None:
    response = upload_model(client, project_headers, *model_files(tmp_path, n_features=6, n_classes=2))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["architecture"], body["input_shape"], body["num_classes"]) == (
        "safetensors",
        "linearnet",
        [6],
        2,
    )


def test_model_and_spec_together_or_nothing_is_422(client: TestClient, project_headers, tmp_path: Path) -> None:
    spec, weights = model_files(tmp_path)
    path = pt2_file(tmp_path)
    files = {"model": (path.name, path.read_bytes()), "spec": ("m.json", spec), "weights": ("m.safetensors", weights)}
    response = client.post("/models", files=files, headers=project_headers)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "model" and "not both" in response.json()["detail"]["message"]
    response = client.post("/models", data={"name": "x"}, headers=project_headers)
    assert response.status_code == 422
    assert "export-model" in response.json()["detail"]["message"]


# -------------------------------------------------------------------------------------------- hostile uploads
def test_pt2_with_a_pickled_payload_is_415_and_never_runs(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    marker = tmp_path / "pwned-pt2-pickle"
    path = pickled_member_pt2(tmp_path, marker)
    assert not marker.exists()
    detail = _refused(client, project_headers, service_settings, path, (415,))
    assert not marker.exists()
    assert "pickle" in detail["message"].lower() or "weights_only" in detail["message"]


def test_pt2_with_a_custom_operator_is_refused_and_never_runs(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    """The custom operator is registered in this process, so running the graph here would write the marker."""
    marker = tmp_path / "pwned-custom-op"
    path = custom_op_pt2(tmp_path, marker)
    assert not marker.exists()
    detail = _refused(client, project_headers, service_settings, path, (415, 422))
    assert "amulet_canary" in detail["message"]  # names the operator
    assert not marker.exists()


def test_onnx_with_external_data_outside_the_upload_is_refused(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    pytest.importorskip("onnx")
    secret = tmp_path / "secret-weights.bin"
    path = external_data_onnx(tmp_path, secret)
    detail = _refused(client, project_headers, service_settings, path, (415, 422))
    assert "external" in detail["message"].lower()


@pytest.mark.parametrize("filename", ["model.pt", "model.pt2", "model.onnx"])
def test_pickled_model_in_the_model_field_is_415_and_never_loaded(
    client: TestClient, project_headers, tmp_path: Path, service_settings, filename: str
) -> None:
    """torch.save of a whole module (a pickle in a zip), whatever its name: 415 with the export command."""
    import torch

    marker = tmp_path / f"pwned-{filename}"
    buffer = io.BytesIO()
    torch.save({"model": residual_mlp(), "hook": CreatesFile(marker)}, buffer)
    path = tmp_path / filename
    path.write_bytes(buffer.getvalue())
    detail = _refused(client, project_headers, service_settings, path, (415,))
    assert "pickled" in detail["message"]
    assert not marker.exists()


def test_unknown_model_file_type_is_415(client: TestClient, project_headers, tmp_path: Path, service_settings) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    detail = _refused(client, project_headers, service_settings, path, (415,))
    assert ".pt2" in detail["message"] and ".onnx" in detail["message"]


def test_malformed_pt2_is_422(client: TestClient, project_headers, tmp_path: Path, service_settings) -> None:
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"this is not a torch.export archive")
    _refused(client, project_headers, service_settings, path, (422,))


def test_model_that_gives_nan_is_422_at_upload(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    """Pre-flight at upload: a finite forward pass on a batch."""
    import torch

    class NotFinite(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(-(self.fc(x) ** 2) - 1.0)  # log of a negative number: NaN

    path = export_pt2(NotFinite().eval(), tmp_path / "nan.pt2", (6,))
    detail = _refused(client, project_headers, service_settings, path, (422,))
    assert "finite" in detail["message"].lower() or "nan" in detail["message"].lower()


# ------------------------------------------------------------------------------------------------------ submit
def _dataset(client: TestClient, headers) -> dict:
    response = upload_dataset(client, headers, csv_bytes(), "people.csv", label="income", sensitive="sex")
    assert response.status_code == 201, response.text
    return response.json()


def test_uploaded_pt2_is_resolved_to_model_file_at_submit(
    client: TestClient, project_headers, tmp_path: Path, service_settings
) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker

    dataset = _dataset(client, project_headers)
    n = dataset["summary"]["num_features"]
    model = upload_graph(client, project_headers, pt2_file(tmp_path, n_features=n)).json()
    spec = census_spec(dataset={"id": dataset["id"], "training_size": 100}, model={"id": model["id"]})
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["n_cells"] == 2
    with get_sessionmaker(service_settings)() as session:
        row = crud.get_assessment(session, assessment_id=created["id"])
        resolved = row.resolved_spec["model"]
        stored = crud.get_model(session, project_id=row.project_id, model_id=model["id"])
        assert resolved["file"] == stored.weights_path and Path(resolved["file"]).name == "model.pt2"
    assert not resolved.get("weights")


def test_uploaded_pt2_with_the_wrong_input_width_is_422_at_submit(
    client: TestClient, project_headers, tmp_path: Path
) -> None:
    dataset = _dataset(client, project_headers)
    n = dataset["summary"]["num_features"]
    model = upload_graph(client, project_headers, pt2_file(tmp_path, n_features=n - 1), name="narrow").json()
    before = client.get("/assessments", headers=project_headers).json()["count"]
    spec = census_spec(dataset={"id": dataset["id"]}, model={"id": model["id"]}, defenses=[])
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "spec.model.id"
    assert f"expects {n - 1} input features" in detail["message"]
    assert f"'people.csv' has {n}" in detail["message"]
    assert "amulet export-model" in detail["message"]  # the fix
    assert client.get("/assessments", headers=project_headers).json()["count"] == before
    # the class count too: 3 outputs for a binary label
    model3 = upload_graph(client, project_headers, pt2_file(tmp_path, n_features=n, n_classes=3)).json()
    spec = census_spec(dataset={"id": dataset["id"]}, model={"id": model3["id"]}, defenses=[])
    response = client.post("/assessments", json={"spec": spec}, headers=project_headers)
    assert response.status_code == 422
    assert "has 3 outputs but dataset 'people.csv' has 2 classes" in response.json()["detail"]["message"]


def test_client_supplied_model_file_path_is_refused(client: TestClient, project_headers, tmp_path: Path) -> None:
    path = pt2_file(tmp_path)
    response = client.post(
        "/assessments", json={"spec": census_spec(model={"file": str(path)})}, headers=project_headers
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "spec.model.file" and "POST /models" in detail["message"]
