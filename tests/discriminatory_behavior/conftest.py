"""Session fixtures: census baseline and adversarially debiased models (same seed), trained once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig

CONFIG = TrainConfig(epochs=8, batch_size=128)


@pytest.fixture(scope="session")
def census_split(census) -> tuple[TensorData, TensorData]:
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    test = TensorData.from_numpy(census.x_test, census.y_test, census.z_test)
    return train.subset(np.random.default_rng(0).permutation(len(train))[:5000]), test


def census_factory(census):
    from amulet.models import LinearNet

    def factory() -> torch.nn.Module:
        return LinearNet(census.num_features, 2, [64, 32])

    return factory


@pytest.fixture(scope="session")
def census_baseline(census, census_split) -> torch.nn.Module:
    return Recipe(CONFIG).train(census_factory(census), census_split[0], seed=0)


@pytest.fixture(scope="session")
def census_debiased(census, census_split) -> torch.nn.Module:
    from amulet import registry

    info = registry.get_defense("adversarial_debiasing")
    return Recipe(CONFIG, [info.make_stage(info.params())]).train(census_factory(census), census_split[0], seed=0)
