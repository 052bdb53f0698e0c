"""Shared test fixtures: an isolated AMULET_HOME, seeds, and small real datasets (session-scoped)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Test helper modules that live beside this file (``direction_testing``) import by name from any test directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Every test session writes under its own home: nothing touches the user's ~/.amulet.
_HOME = Path(tempfile.mkdtemp(prefix="amulet-test-home-"))
os.environ.setdefault("AMULET_HOME", str(_HOME))
os.environ.setdefault("AMULET_DEVICE", "cpu")

import torch  # noqa: E402

# One intra-op thread: the test models are tiny, and the suite shares 2 cores with the worker, API and
# browser processes it starts; two threads spin-waiting on a busy core made some files ~10x slower.
os.environ.setdefault("AMULET_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def seed() -> int:
    """The seed tests use unless they need several."""
    return 7


@pytest.fixture(scope="session")
def amulet_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def census():
    """Full UCI Adult census from the offline source (sensitive columns excluded from features)."""
    from amulet.utils import load_data

    return load_data(str(_HOME / "data"), "census", exp_id=0)


@pytest.fixture(scope="session")
def fmnist_small():
    """Fashion-MNIST subsampled: 10% of train (6,000) and 20% of test (2,000), deterministic."""
    from amulet.utils import load_data

    return load_data(str(_HOME / "data"), "fmnist", training_size=0.1, test_size=0.2, exp_id=0)
