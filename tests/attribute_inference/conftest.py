"""Session fixtures: one small census target model, trained once, wrapped in a CellContext."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

from amulet.progress import SilentProgress
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.utils import TensorData, TrainConfig


def census_cell(census, *, n_member: int = 4000, n_adversary: int = 4000, n_test: int = 4000, seed: int = 0):
    """A CellContext on census: disjoint member / adversary rows from the train split, test rows from the test split."""
    from amulet.models import LinearNet

    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    test = TensorData.from_numpy(census.x_test, census.y_test, census.z_test)
    order = np.random.default_rng(seed).permutation(len(train))
    member = train.subset(order[:n_member])
    adversary = train.subset(order[n_member : n_member + n_adversary])
    test = test.subset(np.random.default_rng(seed + 1).permutation(len(test))[:n_test])
    recipe = Recipe(TrainConfig(epochs=8, batch_size=128))

    def factory() -> torch.nn.Module:
        return LinearNet(census.num_features, 2, [64, 32])

    target = recipe.train(factory, member, seed=seed)
    return CellContext(
        target=target,
        model_factory=factory,
        recipe=recipe,
        dataset=census,
        member=member,
        adversary=adversary,
        test=test,
        seed=seed,
        device=torch.device("cpu"),
        cache_dir=tempfile.mkdtemp(prefix="amulet-p2-"),
        progress=SilentProgress(),
        input_shape=(census.num_features,),
    )


@pytest.fixture(scope="session")
def census_p2_cell(census) -> CellContext:
    return census_cell(census)
