"""Helpers of the service tests (backend, worker, e2e): real services and factories.

Real services for the service tests: a fresh PostgreSQL database, a Redis queue, SQLite files.

Nothing is mocked: the API and worker tests run against the same database engines and brokers as
production. When PostgreSQL or Redis is not listening, the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import io
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amulet.settings import Settings

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ADMIN_TOKEN = "amt_test-admin-token-0123456789abcdef"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_port(host: str, port: int, what: str) -> None:
    if not port_open(host, port):
        pytest.skip(f"{what} is not listening on {host}:{port} (start it to run this test)")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); yields its SQLAlchemy URL."""
    require_port(PG_HOST, PG_PORT, "PostgreSQL")
    import psycopg

    name = f"amulet_test_{uuid.uuid4().hex[:10]}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        from backend.core.db import dispose_engines

        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def purge_redis_queue(queue: str) -> None:
    """Delete a test queue's messages from Redis."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    client.delete(queue)
    client.close()


def make_settings(home: Path, *, database_url: str = "", broker_url: str = "", **extra: Any) -> Settings:
    """Settings for one test service: its own home, database, broker and queue."""
    values: dict[str, Any] = {
        "home": home,
        "device": "cpu",
        "database_url": database_url,
        "broker_url": broker_url,
        "admin_token": ADMIN_TOKEN,
        "task_queue": f"amulet-test-{uuid.uuid4().hex[:8]}",
        "max_upload_bytes": 4 * 1024 * 1024,
        "max_rows": 20_000,
        "max_columns": 500,
        "max_uncompressed_bytes": 64 * 1024 * 1024,
    }
    values.update(extra)
    return Settings(**values)


N_FEATURES = 6


def model_files(
    tmp_path: Path,
    *,
    hidden: list[int] | None = None,
    seed: int = 0,
    n_features: int = N_FEATURES,
    n_classes: int = 2,
) -> tuple[bytes, bytes]:
    """(architecture spec JSON, safetensors weights) of a small LinearNet written by amulet.io.save_model."""
    import torch

    from amulet.io import save_model
    from amulet.models import LinearNet
    from amulet.utils import seeded_init

    model = seeded_init(lambda: LinearNet(n_features, n_classes, hidden_layer_sizes=hidden or [4]), seed)
    stem = f"model-{seed}-{'-'.join(map(str, hidden or [4]))}-{n_features}x{n_classes}"
    spec_path, weights_path = save_model(model, tmp_path / stem)
    del torch
    return Path(spec_path).read_bytes(), Path(weights_path).read_bytes()


def upload_model(client: Any, headers: dict[str, str], spec: bytes, weights: bytes, name: str = "m") -> Any:
    files = {"spec": ("model.json", spec, "application/json"), "weights": ("model.safetensors", weights)}
    return client.post("/models", files=files, data={"name": name}, headers=headers)


def csv_bytes(n_rows: int = 200, *, seed: int = 0, label: str = "income", nan: bool = False) -> bytes:
    """A small mixed-type table (numeric, categorical, a binary sensitive column, a binary label)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n_rows)
    hours = rng.normal(40, 10, n_rows).round(1)
    job = rng.choice(["clerk", "engineer", "nurse"], n_rows)
    sex = rng.choice(["Male", "Female"], n_rows)
    y = (age + rng.normal(0, 10, n_rows) > 45).astype(int)
    lines = [f"age,hours,job,sex,{label}"]
    for i in range(n_rows):
        h = "nan" if nan and i == 3 else f"{hours[i]}"
        lines.append(f"{age[i]},{h},{job[i]},{sex[i]},{'>50K' if y[i] else '<=50K'}")
    return ("\n".join(lines) + "\n").encode()


def npz_bytes(n_rows: int = 100, *, seed: int = 0, nan: bool = False, **extra: np.ndarray) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32)
    if nan:
        x[5, 2] = np.nan
    y = (x[:, 0] > 0).astype(np.int64)
    z = (x[:, 1] > 0).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, z=z, **extra)
    return buffer.getvalue()


def upload_dataset(client: Any, headers: dict[str, str], content: bytes, filename: str, **form: Any) -> Any:
    return client.post("/datasets", files={"file": (filename, content)}, data=form, headers=headers)


def census_spec(**overrides: Any) -> dict[str, Any]:
    """A tiny census assessment (seconds of work): baseline + one defense, one risk, one seed."""
    spec: dict[str, Any] = {
        "name": "tiny census",
        "dataset": {"name": "census", "training_size": 600, "test_size": 300},
        "model": {"architecture": "linearnet", "capacity": "m1"},
        "training": {"epochs": 1, "batch_size": 128},
        "defenses": [{"name": "outlier", "defense": "outlier_removal", "params": {}}],
        "risks": [{"risk": "evasion"}],
        "seeds": [0],
    }
    spec.update(overrides)
    return json.loads(json.dumps(spec))


def plan_assessment_row(settings: Any, spec: dict[str, Any]) -> str:
    """Plan ``spec`` in the first project through the intake path (POST /assessments' own code) and return
    the queued assessment's id (for worker tests that run its jobs themselves)."""
    from sqlalchemy import select

    from backend import crud
    from backend.core.db import get_sessionmaker
    from backend.models import Project
    from backend.planning import plan_submission

    with get_sessionmaker(settings)() as session:
        project = session.scalar(select(Project))
        planned = plan_submission(session, project_id=project.id, spec=spec, name=None, settings=settings)
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
        return row.id
