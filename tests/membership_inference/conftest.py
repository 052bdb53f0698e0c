"""Census rows for the membership inference tests (real UCI Adult, shuffled with a fixed seed)."""

from __future__ import annotations

import numpy as np
import pytest

from amulet.utils import TensorData


@pytest.fixture(scope="module")
def census_rows(census) -> tuple[TensorData, TensorData]:
    """(train pool, test rows): the census training split shuffled, and 4,000 test rows."""
    order = np.random.default_rng(0).permutation(len(census.x_train))
    train = TensorData.from_numpy(census.x_train[order], census.y_train[order], census.z_train[order])
    test = TensorData.from_numpy(census.x_test[:4000], census.y_test[:4000], census.z_test[:4000])
    return train, test
