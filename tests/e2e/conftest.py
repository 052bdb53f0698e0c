"""End-to-end fixtures: real uvicorn, real Celery worker processes, real brokers and databases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_stack import Stack
from service_testing import REDIS_HOST, REDIS_PORT, postgres_database, purge_redis_queue, require_port


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[Stack]:
    """The embedded default: SQLite database and SQLite broker under a fresh AMULET_HOME."""
    stack = Stack(tmp_path / "home", {})
    stack.home.mkdir()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def distributed_stack(tmp_path: Path) -> Iterator[Stack]:
    """The distributed form: PostgreSQL database and Redis broker (a short visibility timeout)."""
    require_port(REDIS_HOST, REDIS_PORT, "Redis")
    with postgres_database() as url:
        stack = Stack(
            tmp_path / "home",
            {
                "AMULET_DATABASE_URL": url,
                "AMULET_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                "AMULET_TASK_VISIBILITY_TIMEOUT": "4",
            },
        )
        stack.home.mkdir()
        try:
            yield stack
        finally:
            stack.stop()
            purge_redis_queue(stack.env["AMULET_TASK_QUEUE"])


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    """A tiny census assessment: baseline + outlier removal, PGD evasion, one seed (2 trainings, 2 cells)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny census\n"
        # big enough to train a useful baseline (81 % vs a 73 % majority rate): a degenerate one is flagged and
        # its checks are inconclusive, which would make the submit exit 1
        "dataset: {name: census, training_size: 2000, test_size: 300}\n"
        "model: {architecture: linearnet, capacity: m1}\n"
        "training: {epochs: 5, batch_size: 64}\n"
        "defenses:\n  - {name: outlier, defense: outlier_removal}\n"
        "risks:\n  - {risk: evasion}\n"
        "policy:\n  - {metric: evasion.robust_accuracy, op: '>=', threshold: 0.0}\n"
        "seeds: [0]\n"
    )
    return path
