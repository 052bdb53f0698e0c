"""Model and dataset intake: validation before storage, 413/415/422 naming the field, never unpickling."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testing import csv_bytes, model_files, npz_bytes, upload_dataset, upload_model


def _uploads(settings) -> list[Path]:
    root = settings.resolved_artifact_dir / "uploads"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


class _CreatesFile:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_model_upload_roundtrip(client: TestClient, project_headers, tmp_path: Path) -> None:
    spec, weights = model_files(tmp_path)
    response = upload_model(client, project_headers, spec, weights, name="tiny")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["architecture"] == "linearnet" and body["weights_format"] == "safetensors"
    import hashlib

    assert body["sha256"] == hashlib.sha256(weights).hexdigest()
    assert body["n_parameters"] > 0
    assert client.get(f"/models/{body['id']}", headers=project_headers).json()["id"] == body["id"]
    assert body["id"] in {m["id"] for m in client.get("/models", headers=project_headers).json()["data"]}


@pytest.mark.parametrize("container", ["raw", "torch_zip"])
def test_pickle_upload_is_refused_and_never_loaded(
    client: TestClient, project_headers, tmp_path: Path, service_settings, container: str
) -> None:
    import torch

    marker = tmp_path / f"pwned-{container}"
    payload = {"layers.0.weight": _CreatesFile(marker)}
    if container == "raw":
        data = pickle.dumps(payload, protocol=4)
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
    assert not marker.exists()
    before = set(_uploads(service_settings))
    spec = json.loads(model_files(tmp_path)[0])
    spec.pop("weights_sha256")  # so that the weights are read, not refused for their checksum
    response = upload_model(client, project_headers, json.dumps(spec).encode(), data)
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert detail["field"] == "weights"
    assert "export-model" in detail["message"]
    assert not marker.exists()
    assert set(_uploads(service_settings)) == before  # nothing of the refused upload is kept


def test_wrong_weight_shapes_are_422(client: TestClient, project_headers, tmp_path: Path) -> None:
    spec_small, _ = model_files(tmp_path, hidden=[4])
    _, weights_big = model_files(tmp_path, hidden=[8])
    spec = json.loads(spec_small)
    spec.pop("weights_sha256", None)  # so that the shape check, not the checksum, answers
    response = upload_model(client, project_headers, json.dumps(spec).encode(), weights_big)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["field"] == "weights"
    assert "shape" in detail["message"].lower()


def test_bad_spec_json_is_422(client: TestClient, project_headers, tmp_path: Path) -> None:
    _, weights = model_files(tmp_path)
    response = upload_model(client, project_headers, b"{not json", weights)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "spec"
    response = upload_model(
        client, project_headers, b'{"architecture": "nosuchnet", "input_shape": [6], "num_classes": 2}', weights
    )
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "spec"


def test_csv_upload(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income", sensitive="sex")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["format"], body["label"], body["sensitive"], body["n_rows"]) == ("csv", "income", ["sex"], 200)
    assert len(body["sha256"]) == 64


def test_csv_without_label_column_is_422(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, csv_bytes(label="target"), "people.csv", label="income")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "label"
    assert "'income'" in detail["message"] and "'target'" in detail["message"]


def test_csv_missing_sensitive_column_is_422(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, csv_bytes(), "people.csv", label="income", sensitive="race")
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "sensitive"


def test_dataset_errors_name_the_uploaded_file_and_advice_the_form_can_follow(
    client: TestClient, project_headers
) -> None:
    """Every upload is stored as data.<ext>; the message speaks of the user's file and of form fields, never of
    a Python-only argument."""
    response = upload_dataset(
        client, project_headers, csv_bytes(nan=True), "loans 2026.csv", label="income", sensitive="sex"
    )
    assert response.status_code == 422
    message = response.json()["detail"]["message"]
    assert "'loans 2026.csv'" in message and "data.csv" not in message
    # every feature marked sensitive: the fix is the form's 'sensitive' field, not include_sensitive=True
    response = upload_dataset(
        client, project_headers, csv_bytes(), "people.csv", label="income", sensitive="age,hours,job,sex"
    )
    assert response.status_code == 422, response.text
    message = response.json()["detail"]["message"]
    assert "include_sensitive" not in message and "'sensitive' field" in message and "people.csv" in message


def test_csv_row_limit(client: TestClient, project_headers, service_settings) -> None:
    content = csv_bytes(service_settings.max_rows + 1)
    response = upload_dataset(client, project_headers, content, "big.csv", label="income")
    assert response.status_code == 422
    assert "AMULET_MAX_ROWS" in response.json()["detail"]["message"]


def test_parquet_upload(client: TestClient, project_headers, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(csv_bytes()))
    path = tmp_path / "people.parquet"
    frame.to_parquet(path)
    response = upload_dataset(
        client, project_headers, path.read_bytes(), "people.parquet", label="income", sensitive="sex"
    )
    assert response.status_code == 201, response.text
    assert response.json()["n_rows"] == 200


def test_npz_upload(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, npz_bytes(), "arrays.npz")
    assert response.status_code == 201, response.text
    assert response.json()["summary"]["x_shape"] == [100, 6]


def test_npz_with_nan_is_422(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, npz_bytes(nan=True), "arrays.npz")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "x"
    assert "NaN" in detail["message"] and "nan_to_num" in detail["message"]


def test_npz_object_array_is_not_unpickled(client: TestClient, project_headers, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-npz"
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((4, 2)), y=np.zeros(4, dtype=int), z=np.array([_CreatesFile(marker)], dtype=object))
    response = upload_dataset(client, project_headers, buffer.getvalue(), "arrays.npz")
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "z"
    assert not marker.exists()


def test_npz_zip_bomb_is_refused(client: TestClient, project_headers, service_settings) -> None:
    buffer = io.BytesIO()
    big = np.zeros(service_settings.max_uncompressed_bytes // 8 + 1024, dtype=np.float64)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, big.reshape(-1, 8))
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(len(big) // 8, dtype=np.int64))
    data = buffer.getvalue()
    assert len(data) < service_settings.max_upload_bytes
    response = upload_dataset(client, project_headers, data, "bomb.npz")
    assert response.status_code == 413
    assert "zip bomb" in response.json()["detail"]["message"]


def test_oversize_upload_is_413(client: TestClient, project_headers, service_settings) -> None:
    content = b"a,b\n" + b"1,2\n" * (service_settings.max_upload_bytes // 4 + 10)
    before = set(_uploads(service_settings))
    response = upload_dataset(client, project_headers, content, "huge.csv", label="b")
    assert response.status_code == 413
    assert "AMULET_MAX_UPLOAD_BYTES" in response.json()["detail"]["message"]
    assert set(_uploads(service_settings)) == before


def test_unknown_file_type_is_415(client: TestClient, project_headers) -> None:
    response = upload_dataset(client, project_headers, b"hello", "data.xlsx", label="y")
    assert response.status_code == 415
    assert response.json()["detail"]["field"] == "file"
