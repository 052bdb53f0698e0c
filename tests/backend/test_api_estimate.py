"""The cost estimate at submit: cells, trainings and seconds with how they were derived, shown again by the
detail while the assessment is queued or running.

Past units are written with the worker's own crud calls (``upsert_training``/``upsert_cell``), as the worker
records a finished unit.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_testing import census_spec

from amulet.settings import Settings
from backend import crud
from backend.core.db import get_sessionmaker
from backend.planning import MODEL_CELL_SECONDS, MODEL_TRAINING_SECONDS, MODEL_UNIT_OVERHEAD_SECONDS


def _submit(client: TestClient, headers: dict[str, str], spec: dict) -> dict:
    response = client.post("/assessments", json={"spec": spec}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def _record_units(
    settings: Settings, assessment_id: str, *, training_seconds: float, cell_seconds: list[float]
) -> None:
    """Record every training done in ``training_seconds`` and the cells ok in ``cell_seconds`` (cycled)."""
    with get_sessionmaker(settings)() as session:
        for training in crud.list_trainings(session, assessment_id=assessment_id):
            crud.upsert_training(
                session, assessment_id=assessment_id, key=training.key, status="done", seconds=training_seconds
            )
        for i, cell in enumerate(crud.list_cells(session, assessment_id=assessment_id)):
            crud.upsert_cell(
                session,
                assessment_id=assessment_id,
                key=cell.key,
                status="ok",
                seconds=cell_seconds[i % len(cell_seconds)],
                metrics={"accuracy": 0.5},
            )
        session.commit()


def test_submit_returns_an_estimate_from_the_per_kind_model(client: TestClient, project_headers) -> None:
    spec = census_spec(risks=[{"risk": "evasion"}, {"risk": "membership_inference"}], seeds=[0, 1])
    created = _submit(client, project_headers, spec)
    estimate = created["estimate"]
    # (1 + 1 row) x 2 risks x 2 seeds cells, (1 + 1 row) x 2 seeds trainings
    assert estimate["cells"] == created["n_cells"] == 8
    assert estimate["trainings"] == created["n_trainings"] == 4
    items = {(i["unit"], i["kind"]): i for i in estimate["items"]}
    assert set(items) == {
        ("training", "baseline"),
        ("training", "outlier"),
        ("cell", "evasion/pgd"),
        ("cell", "membership_inference/lira"),
    }
    assert sum(i["count"] for i in estimate["items"] if i["unit"] == "cell") == 8
    # a fresh project has no past run: every kind comes from the documented model, the slower attack costs more
    assert {i["source"] for i in estimate["items"]} == {"model"} and estimate["measured_share"] == 0.0
    assert "Per-kind model" in estimate["basis"] and "queue is not included" in estimate["basis"]
    lira, pgd = items[("cell", "membership_inference/lira")], items[("cell", "evasion/pgd")]
    assert lira["seconds_each"] > pgd["seconds_each"] > MODEL_UNIT_OVERHEAD_SECONDS
    ratio = (lira["seconds_each"] - MODEL_UNIT_OVERHEAD_SECONDS) / (pgd["seconds_each"] - MODEL_UNIT_OVERHEAD_SECONDS)
    expected = MODEL_CELL_SECONDS["membership_inference/lira"] / MODEL_CELL_SECONDS["evasion/pgd"]
    assert abs(ratio / expected - 1) < 0.01, ratio  # seconds are rounded to 0.1 ms
    assert items[("training", "baseline")]["seconds_each"] > MODEL_UNIT_OVERHEAD_SECONDS
    total = sum(i["seconds_each"] * i["count"] for i in estimate["items"])
    assert abs(estimate["seconds"] - total) < 0.05
    # the detail of the queued assessment shows the same estimate, and the whole of it as the time left
    detail = client.get(f"/assessments/{created['id']}", headers=project_headers).json()
    assert detail["status"] == "queued" and detail["estimate"] == estimate
    assert detail["progress"]["eta_seconds"] == round(estimate["seconds"], 1)


def test_more_work_is_estimated_longer(client: TestClient, project_headers) -> None:
    """The model scales with training rows x epochs: 4 x the epochs on the same data is about 4 x the time
    (less the fixed per-unit overhead)."""
    short = _submit(client, project_headers, census_spec(training={"epochs": 1, "batch_size": 128}))["estimate"]
    long = _submit(client, project_headers, census_spec(training={"epochs": 4, "batch_size": 128}))["estimate"]
    for a, b in zip(short["items"], long["items"], strict=True):
        assert a["kind"] == b["kind"] and a["source"] == b["source"] == "model"
        scaled = (b["seconds_each"] - MODEL_UNIT_OVERHEAD_SECONDS) / (a["seconds_each"] - MODEL_UNIT_OVERHEAD_SECONDS)
        assert abs(scaled / 4.0 - 1) < 0.01, (a, b)
    assert long["seconds"] > 2 * short["seconds"]
    assert MODEL_TRAINING_SECONDS > 0


def test_past_runs_of_the_same_kind_replace_the_model(
    client: TestClient, project_headers, admin_headers, service_settings: Settings
) -> None:
    spec = census_spec(seeds=[0, 1, 2])
    first = _submit(client, project_headers, spec)
    _record_units(service_settings, first["id"], training_seconds=2.0, cell_seconds=[1.0, 3.0, 5.0])
    again = _submit(client, project_headers, spec)["estimate"]
    items = {(i["unit"], i["kind"]): i for i in again["items"]}
    # median of the past cells (1, 3, 5 per row: 3 s) and trainings (2 s), each kind measured
    cell = items[("cell", "evasion/pgd")]
    assert cell["source"] == "measured" and cell["seconds_each"] == 3.0 and cell["samples"] == 6
    assert items[("training", "baseline")] == {
        "unit": "training",
        "kind": "baseline",
        "count": 3,
        "seconds_each": 2.0,
        "source": "measured",
        "samples": 3,
    }
    assert again["seconds"] == 6 * 2.0 + 6 * 3.0 and again["measured_share"] == 1.0
    assert again["basis"].startswith("Measured")
    # a new defense row on the same workload: its trainings fall back to the model, the cells stay measured
    mixed = census_spec(
        seeds=[0, 1, 2],
        defenses=[
            {"name": "outlier", "defense": "outlier_removal", "params": {}},
            {"name": "dp", "defense": "dp_sgd", "params": {}},
        ],
    )
    estimate = _submit(client, project_headers, mixed)["estimate"]
    sources = {(i["unit"], i["kind"]): i["source"] for i in estimate["items"]}
    assert sources[("training", "dp")] == "model" and sources[("training", "outlier")] == "measured"
    assert sources[("cell", "evasion/pgd")] == "measured"
    assert estimate["basis"].startswith("Mixed") and 0 < estimate["measured_share"] < 1
    # other settings (more epochs) are another kind of work: the model again
    other = _submit(client, project_headers, census_spec(seeds=[0, 1, 2], training={"epochs": 3}))["estimate"]
    assert {i["source"] for i in other["items"]} == {"model"}
    # another project's measurements are its own
    project = client.post("/projects", json={"name": f"est-{first['id'][:8]}"}, headers=admin_headers).json()
    b_headers = {"Authorization": f"Bearer {project['token']['token']}"}
    assert {i["source"] for i in _submit(client, b_headers, spec)["estimate"]["items"]} == {"model"}


def test_running_assessment_counts_down_from_the_estimate(
    client: TestClient, project_headers, service_settings: Settings
) -> None:
    created = _submit(client, project_headers, census_spec(training={"epochs": 200, "batch_size": 128}))
    planned = created["estimate"]["seconds"]
    assert planned > 30  # long enough not to be overdue while the test runs
    with get_sessionmaker(service_settings)() as session:
        assert crud.mark_running(session, assessment_id=created["id"])
        session.commit()
    detail = client.get(f"/assessments/{created['id']}", headers=project_headers).json()
    assert detail["status"] == "running" and detail["estimate"] == created["estimate"]
    # no unit finished yet: the estimate minus the time since the start
    assert planned - 20 < detail["progress"]["eta_seconds"] <= planned


def test_over_the_limit_names_the_limit_and_the_setting(client: TestClient, project_headers) -> None:
    response = client.post("/assessments", json={"spec": census_spec(seeds=list(range(21)))}, headers=project_headers)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "spec.seeds"
    assert "the limit of 20" in detail["message"] and "AMULET_MAX_SEEDS" in detail["message"]
