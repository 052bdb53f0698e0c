"""Helpers of the dashboard tests: free ports, starting and stopping the real services, a quick spec."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "amulet-dashboard-test-token-0123456789"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` until it answers (any status below 500), or fail with the process log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started (then kill it if it lingers)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class Service:
    """A running API: where it listens, its admin token and its environment (for the worker)."""

    url: str
    token: str
    env: dict[str, str]
    home: Path


def service_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AMULET_HOME": str(home),
            "AMULET_ADMIN_TOKEN": ADMIN_TOKEN,
            "AMULET_DEVICE": "cpu",
            "AMULET_NUM_THREADS": "1",
            "AMULET_DATABASE_URL": "",
            "AMULET_BROKER_URL": "",
            "AMULET_RESULT_BACKEND": "",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    # Built-in datasets are read from the session's shared data cache (no download).
    env.setdefault("AMULET_DATA_DIR", str(Path(os.environ["AMULET_HOME"]) / "data"))
    return env


QUICK_SPEC = {
    "name": "quick census",
    "dataset": {"name": "census", "training_size": 400, "test_size": 200},
    "training": {"epochs": 1, "batch_size": 128},
    "defenses": [{"defense": "adversarial_training", "params": {"iterations": 2}}],
    "risks": [
        {"risk": "evasion", "attack": "pgd", "params": {"iterations": 3, "max_samples": 64}},
        {"risk": "discriminatory_behavior"},
    ],
    "policy": [{"metric": "evasion.robust_accuracy", "op": ">=", "threshold": 1.0}],
    "seeds": [0, 1],
}


def submit_and_wait(api: Service, spec: dict, *, timeout: float = 240) -> dict:
    """Submit ``spec`` through the REST API and wait until the worker finished it."""
    headers = {"Authorization": f"Bearer {api.token}"}
    created = httpx.post(f"{api.url}/assessments", json={"spec": spec}, headers=headers, timeout=30)
    assert created.status_code == 202, created.text
    assessment_id = created.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = httpx.get(f"{api.url}/assessments/{assessment_id}", headers=headers, timeout=30).json()
        if detail["status"] not in ("queued", "running", "finalizing"):
            assert detail["status"] == "succeeded", detail.get("errors")
            return detail
        time.sleep(1.0)
    pytest.fail(f"assessment {assessment_id} did not finish within {timeout} s")


def finish_with_an_errored_cell(api: Service, name: str) -> str:
    """An assessment of the API's database that ends `partial`, run by the worker's own jobs in this process.

    A tiny census assessment (baseline + outlier removal, one evasion column, one seed) is planned as
    ``POST /assessments`` plans it, without queueing it; its trainings and its baseline cell run for real;
    the defended cell is recorded as hitting the task time limit (what ``worker.tasks.run_cell`` records on
    ``SoftTimeLimitExceeded``); the finalizer aggregates and renders the reports. Returns its id.
    """
    # The API's database layer and the worker's jobs, imported here only: every other helper of this module
    # talks to the running services over HTTP, and the browser tests import this module too.
    from sqlalchemy import select

    from amulet.settings import Settings
    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import Project
    from backend.planning import plan_submission
    from worker import jobs

    settings = Settings(home=api.home, device="cpu", admin_token=api.token, database_url="", broker_url="")
    spec = {
        "name": name,
        "dataset": {"name": "census", "training_size": 400, "test_size": 200},
        "training": {"epochs": 1, "batch_size": 128},
        "defenses": [{"name": "outlier", "defense": "outlier_removal", "params": {}}],
        "risks": [{"risk": "evasion", "attack": "pgd", "params": {"iterations": 3, "max_samples": 64}}],
        "seeds": [0],
    }
    with get_sessionmaker(settings)() as session:
        project = session.scalars(select(Project).order_by(Project.created_at)).first()
        assert project is not None
        planned = plan_submission(session, project_id=project.id, spec=spec, name=None)
        row = crud.create_assessment(
            session,
            project_id=project.id,
            name=planned.name,
            spec=spec,
            resolved_spec=planned.resolved_spec,
            training_keys=planned.training_keys,
            cells=planned.cells,
        )
        session.commit()
        assessment_id = row.id
    trainings, _cells = jobs.start(settings, assessment_id) or ([], [])
    for key in trainings:
        jobs.run_one_training(settings, assessment_id, key)
    for cell in planned.cells:
        if cell["row"] == "baseline":
            jobs.run_one_cell(settings, assessment_id, cell["key"])
        else:
            jobs.record_cell_error(settings, assessment_id, cell["key"], "time limit exceeded (AMULET_TASK_TIME_LIMIT)")
    assert jobs.finalize(settings, assessment_id)
    return assessment_id
