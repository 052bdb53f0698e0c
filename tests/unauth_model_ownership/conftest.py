"""Models shared by the model-stealing tests (real census and Fashion-MNIST, trained once per session)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.utils import TensorData, TrainConfig, seeded_init, train_model


@pytest.fixture(scope="session")
def census_split(census):
    """The target's half (3,000 rows), the adversary's half (3,000 rows) and 2,000 test rows."""
    gen = torch.Generator().manual_seed(0)
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    test = TensorData.from_numpy(census.x_test, census.y_test, census.z_test)
    order = torch.randperm(len(train), generator=gen)
    return train.subset(order[:3000]), train.subset(order[3000:6000]), test.subset(torch.arange(2000))


def census_factory(num_features: int) -> nn.Module:
    return LinearNet(num_features, 2, hidden_layer_sizes=[64, 32])


@pytest.fixture(scope="session")
def census_target(census_split):
    member, _, _ = census_split
    factory = lambda: census_factory(member.x.shape[1])  # noqa: E731
    return train_model(seeded_init(factory, 0), member, config=TrainConfig(epochs=5), seed=0)


@pytest.fixture(scope="session")
def census_stolen(census_target, census_split):
    _, adversary, _ = census_split
    surrogate = seeded_init(lambda: census_factory(adversary.x.shape[1]), 1)
    attack = ModelExtraction(
        census_target,
        surrogate,
        torch.optim.Adam(surrogate.parameters(), lr=1e-3),
        adversary.loader(128),
        "cpu",
        epochs=10,
        loss_type="mse",
    )
    return attack.attack()
