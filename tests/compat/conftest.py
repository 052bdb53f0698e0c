"""Fixtures of the upstream-compatibility suite (see ``compat_helpers``).

Every call in this directory uses upstream Amulet 0.6.0's positional order or keyword names on purpose: the
suite is the independent check that code written for upstream runs unchanged on our layer 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from compat_helpers import train_upstream_style

from amulet.utils import load_data


@pytest.fixture(scope="session")
def upstream_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upstream-style pipeline root: empty, so every loader falls back to its offline source."""
    return tmp_path_factory.mktemp("upstream_root")


@pytest.fixture(scope="session")
def census_small(upstream_root: Path):
    # positional (root, dataset, training_size, log, exp_id) as upstream's example scripts call it
    return load_data(upstream_root, "census", 0.05, None, 0, test_size=0.05)


@pytest.fixture(scope="session")
def fmnist_small_compat(upstream_root: Path):
    return load_data(upstream_root, "fmnist", 0.02, None, 0, test_size=0.03)


@pytest.fixture(scope="session")
def census_target(census_small) -> torch.nn.Module:
    return train_upstream_style(census_small, epochs=3)


@pytest.fixture(scope="session")
def fmnist_target(fmnist_small_compat) -> torch.nn.Module:
    return train_upstream_style(fmnist_small_compat, arch="cnn", epochs=2)
