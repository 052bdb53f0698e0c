"""Models shared by the evasion tests: trained once per module on real Fashion-MNIST and census data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.evasion.defenses import AdversarialTrainingPGD
from amulet.models import LinearNet
from amulet.utils import TensorData, TrainConfig, seeded_init, train_model


def fmnist_factory() -> nn.Module:
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[128, 64], batch_norm=False)


@pytest.fixture(scope="session")
def fmnist_tensors(fmnist_small):
    train = TensorData.from_numpy(fmnist_small.x_train, fmnist_small.y_train)
    test = TensorData.from_numpy(fmnist_small.x_test, fmnist_small.y_test)
    return train, test.subset(torch.arange(1000))


@pytest.fixture(scope="session")
def fmnist_model(fmnist_tensors):
    train, _ = fmnist_tensors
    model = seeded_init(fmnist_factory, 1)
    return train_model(model, train, config=TrainConfig(epochs=4, batch_size=128), seed=1)


@pytest.fixture(scope="session")
def fmnist_robust_model(fmnist_tensors):
    train, _ = fmnist_tensors
    train = train.subset(torch.arange(3000))
    model = seeded_init(fmnist_factory, 1)
    defense = AdversarialTrainingPGD(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        train.loader(128, shuffle=True, seed=1),
        "cpu",
        epochs=3,
        epsilon=0.1,
        iterations=4,
        step_size=0.04,
        seed=1,
    )
    return defense.train_robust()


@pytest.fixture(scope="session")
def census_tensors(census):
    gen = torch.Generator().manual_seed(0)
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    test = TensorData.from_numpy(census.x_test, census.y_test, census.z_test)
    order = torch.randperm(len(train), generator=gen)
    member, adversary = train.subset(order[:3000]), train.subset(order[3000:6000])
    return member, adversary, test.subset(torch.arange(2000))
