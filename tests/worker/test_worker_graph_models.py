"""Uploaded exported models in the worker: a ``.pt2`` goes through a small matrix to results, and a model
file that is unsafe or changed since upload is refused before anything loads it (its canary never appears).

The real API (TestClient) uploads and plans, the worker's jobs run in this process against the same SQLite
database and the real engine; nothing is mocked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from graph_models import custom_op_pt2, pickled_member_pt2, pt2_file, upload_graph
from service_testing import ADMIN_TOKEN, census_spec, csv_bytes, upload_dataset

from amulet import registry

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _submit_pt2(settings, tmp_path: Path, **spec_overrides) -> tuple[str, dict]:
    """Upload a CSV and a .pt2 exported for its features, submit a small assessment; (assessment id, model)."""
    from backend.main import create_app

    with TestClient(create_app(settings)) as client:
        dataset = upload_dataset(client, HEADERS, csv_bytes(400), "people.csv", label="income", sensitive="sex")
        assert dataset.status_code == 201, dataset.text
        n = dataset.json()["summary"]["num_features"]
        model = upload_graph(client, HEADERS, pt2_file(tmp_path, n_features=n), name="resmlp")
        assert model.status_code == 201, model.text
        spec = census_spec(
            dataset={"id": dataset.json()["id"], "training_size": 200, "test_size": 100},
            model={"id": model.json()["id"]},
            **spec_overrides,
        )
        created = client.post("/assessments", json={"spec": spec}, headers=HEADERS)
        assert created.status_code == 202, created.text
    return created.json()["id"], model.json()


def _run(settings, assessment_id: str) -> None:
    from worker import jobs

    trainings, cells = jobs.start(settings, assessment_id)
    for key in trainings:
        jobs.run_one_training(settings, assessment_id, key)
    for key in cells:
        jobs.run_one_cell(settings, assessment_id, key)
    jobs.finalize(settings, assessment_id)


def test_uploaded_pt2_runs_a_small_matrix_to_results(worker_settings, tmp_path: Path) -> None:
    from backend import crud
    from backend.core.db import get_sessionmaker

    assessment_id, _model = _submit_pt2(worker_settings, tmp_path)
    _run(worker_settings, assessment_id)
    with get_sessionmaker(worker_settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        trainings = crud.list_trainings(session, assessment_id=assessment_id)
        cells = crud.list_cells(session, assessment_id=assessment_id)
        reports = {r.format: r.path for r in crud.list_reports(session, assessment_id=assessment_id)}
        assert [t.error for t in trainings if t.status != "done"] == []
        assert {c.row: c.status for c in cells} == {"baseline": "ok", "outlier": "ok"}, [c.reason for c in cells]
        assert row.status == "succeeded", row.error
    results = json.loads(Path(reports["json"]).read_text())
    assert results["status"] == "complete"
    assert all(c["metrics"] for c in results["cells"])


def _swap(settings, model: dict, replacement: Path, *, record_sha: bool) -> None:
    """Replace the stored model file (what an attacker with write access to the artifact store would do)."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.core.storage import file_sha256

    with get_sessionmaker(settings)() as session:
        row = next(m for m in crud.list_models(session, project_id=_project(session))[0] if m.id == model["id"])
        Path(row.weights_path).write_bytes(replacement.read_bytes())
        if record_sha:  # so that only the re-inspection, not the checksum, can refuse it
            row.sha256 = file_sha256(Path(row.weights_path))
            session.commit()


def _project(session) -> str:
    from sqlalchemy import select

    from backend.models import Project

    return str(session.scalar(select(Project.id)))


def _refusals(settings, assessment_id: str) -> list[str]:
    from backend import crud
    from backend.core.db import get_sessionmaker

    with get_sessionmaker(settings)() as session:
        trainings = crud.list_trainings(session, assessment_id=assessment_id)
        cells = crud.list_cells(session, assessment_id=assessment_id)
        row = crud.get_assessment(session, assessment_id=assessment_id)
        assert row.status == "failed"
        return [t.error or "" for t in trainings] + [c.reason or "" for c in cells]


@pytest.mark.parametrize("hostile", ["pickled_member", "custom_operator"])
def test_worker_refuses_an_unsafe_model_file_before_loading(worker_settings, tmp_path: Path, hostile: str) -> None:
    """The stored file is swapped for a hostile one after submit (its checksum recorded too): the worker's
    re-inspection refuses it in every training and cell, and the canary never appears."""
    assessment_id, model = _submit_pt2(worker_settings, tmp_path, defenses=[])
    marker = tmp_path / f"pwned-worker-{hostile}"
    make = pickled_member_pt2 if hostile == "pickled_member" else custom_op_pt2
    _swap(worker_settings, model, make(tmp_path / "hostile", marker), record_sha=True)
    _run(worker_settings, assessment_id)
    refusals = _refusals(worker_settings, assessment_id)
    assert refusals and all("refused before loading" in r for r in refusals), refusals
    assert not marker.exists()


def test_worker_refuses_a_model_file_changed_since_upload(worker_settings, tmp_path: Path) -> None:
    assessment_id, model = _submit_pt2(worker_settings, tmp_path, defenses=[])
    other = pt2_file(tmp_path / "other", n_features=model["input_shape"][0], seed=7)  # valid, but not the upload
    _swap(worker_settings, model, other, record_sha=False)
    _run(worker_settings, assessment_id)
    refusals = _refusals(worker_settings, assessment_id)
    assert refusals and all("changed since upload" in r for r in refusals), refusals


# ---------------------------------------------------------------------------------------------------------------
# The three models that are not in the registry, each through every risk that applies to its data, via the
# service: uploaded with POST /models, planned by POST /assessments, run by the worker's jobs (slow).


def _own_models():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the engine's own-model test helpers
    from assess import test_own_model

    return test_own_model


def _service_matrix(settings, model_file: Path, dataset: str, size: int) -> dict:
    """Upload ``model_file``, run baseline + outlier removal + DP-SGD against every risk; the results JSON."""
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.main import create_app

    own = _own_models()
    with TestClient(create_app(settings)) as client:
        model = upload_graph(client, HEADERS, model_file, name=model_file.stem)
        assert model.status_code == 201, model.text
        spec = {
            "name": f"{model_file.name} on {dataset} via the service",
            "dataset": {"name": dataset, "training_size": size, "test_size": size // 2},
            "model": {"id": model.json()["id"]},
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.01},
            "defenses": [
                {"defense": d, "params": own._fast(registry.get_defense(d).params, d)}
                for d in ("outlier_removal", "dp_sgd")
            ],
            "risks": own._risks(dataset, fast=False),
            "seeds": [0],
        }
        created = client.post("/assessments", json={"spec": spec}, headers=HEADERS)
        assert created.status_code == 202, created.text
    assessment_id = created.json()["id"]
    _run(settings, assessment_id)
    with get_sessionmaker(settings)() as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        reports = {r.format: r.path for r in crud.list_reports(session, assessment_id=assessment_id)}
        assert row.status == "succeeded", row.error
    results = json.loads(Path(reports["json"]).read_text())
    cells = results["cells"]
    assert results["status"] == "complete"
    assert not [c for c in cells if c["status"] == "error"]
    assert all(c["reason"] for c in cells if c["status"] == "not_run")
    ok = [c for c in cells if c["status"] == "ok"]
    assert ok
    # "not run" is structural (the risk cannot apply to this model or data), so it cannot depend on the row:
    # each attack either runs in every row or in none
    by_attack: dict[str, set[str]] = {}
    for cell in cells:
        by_attack.setdefault(cell["attack"], set()).add(cell["status"])
    mixed = {attack: statuses for attack, statuses in by_attack.items() if len(statuses) > 1}
    assert not mixed, f"attacks that ran in some rows and not in others: {mixed}"
    assert all(c["metrics"]["model.privacy_epsilon"] > 0 for c in ok if c["row"] == "dp_sgd")
    return results


@pytest.mark.slow
def test_three_own_models_through_every_risk_via_the_service(worker_settings, tmp_path: Path) -> None:
    from torch import nn

    own = _own_models()
    width = own._census_width()
    resmlp = own._trained(own.ResidualMLP(width, 2), "census", rows=1000, epochs=3)
    _service_matrix(worker_settings, own._export(tmp_path, resmlp, "census", "resmlp.pt2"), "census", 800)
    cnn = own._trained(own.DepthwiseCNN(10), "fmnist", rows=1000, epochs=2)
    _service_matrix(worker_settings, own._export(tmp_path, cnn, "fmnist", "dwcnn.pt2"), "fmnist", 600)
    mlp = own._trained(nn.Sequential(nn.Linear(width, 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 2)), "census",
                       rows=1000, epochs=3)  # fmt: skip
    _service_matrix(worker_settings, own._export(tmp_path, mlp, "census", "mlp.onnx"), "census", 800)
