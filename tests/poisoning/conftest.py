"""Data shared by the poisoning tests (real Fashion-MNIST and census, subsampled)."""

from __future__ import annotations

import pytest
import torch

from amulet.utils import TensorData


@pytest.fixture(scope="session")
def fmnist_tensors(fmnist_small):
    train = TensorData.from_numpy(fmnist_small.x_train, fmnist_small.y_train)
    test = TensorData.from_numpy(fmnist_small.x_test, fmnist_small.y_test)
    return train, test


@pytest.fixture(scope="session")
def census_tensors(census):
    gen = torch.Generator().manual_seed(0)
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    test = TensorData.from_numpy(census.x_test, census.y_test, census.z_test)
    order = torch.randperm(len(train), generator=gen)
    member, adversary = train.subset(order[:3000]), train.subset(order[3000:6000])
    return member, adversary, test.subset(torch.arange(2000))
