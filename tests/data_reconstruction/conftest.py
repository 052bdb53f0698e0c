"""Session fixtures: small fmnist and census models, trained once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig


@pytest.fixture(scope="session")
def fmnist_train(fmnist_small) -> TensorData:
    # the stored images: reading train_set items would draw upstream's random training augmentation
    return TensorData.from_numpy(fmnist_small.x_train, fmnist_small.y_train)


@pytest.fixture(scope="session")
def fmnist_mlp(fmnist_train) -> nn.Module:
    """A one-hidden-layer network on flattened fmnist images (inputs stay (1, 28, 28))."""

    def factory() -> nn.Module:
        return nn.Sequential(nn.Flatten(), LinearNet(784, 10, [128], batch_norm=False))

    return Recipe(TrainConfig(epochs=3, batch_size=128)).train(factory, fmnist_train, seed=0)


@pytest.fixture(scope="session")
def census_model(census) -> tuple[nn.Module, TensorData]:
    data = TensorData.from_numpy(census.x_train[:3000], census.y_train[:3000], census.z_train[:3000])
    model = Recipe(TrainConfig(epochs=3, batch_size=128)).train(
        lambda: LinearNet(census.num_features, 2, [32]), data, seed=0
    )
    return model, data


def class_means(data: TensorData, n_classes: int) -> torch.Tensor:
    return torch.stack([data.x[data.y == c].mean(0) for c in range(n_classes)])
