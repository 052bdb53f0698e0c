"""DatasetInference (MinGD + regressor + Welch t-test) on Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import DatasetInference, mingd_distances
from amulet.utils import TensorData, TrainConfig, seeded_init, train_model

DI_ARGS = {"alpha_l2": 0.1, "alpha_linf": 0.01, "num_iter": 60}


def _factory() -> nn.Module:
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[256, 128], batch_norm=False)


def _fmnist(fmnist_small):
    train = TensorData.from_numpy(fmnist_small.x_train, fmnist_small.y_train)
    test = TensorData.from_numpy(fmnist_small.x_test, fmnist_small.y_test)
    return train, test


def test_mingd_reaches_every_class_within_bounds_and_the_predicted_class_at_zero():
    torch.manual_seed(0)  # test-only toy model
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4)
    predicted = model(x).argmax(1)
    for norm, alpha in (("linf", 0.01), ("l2", 0.05), ("l1", 0.5)):
        dist = mingd_distances(model, x, 3, norm=norm, alpha=alpha, num_iter=500, bounds=(0.0, 1.0))
        assert dist.shape == (5, 3)
        assert torch.all(dist[torch.arange(5), predicted] == 0)
        assert torch.all(dist >= 0)


def _owner_and_suspects(fmnist_small, n_private: int, seed: int):
    train, test = _fmnist(fmnist_small)
    private, adversary = train.subset(torch.arange(n_private)), train.subset(torch.arange(n_private, len(train)))
    config = TrainConfig(epochs=40, batch_size=32)
    target = train_model(seeded_init(_factory, seed), private, config=config, seed=seed)
    independent = train_model(
        seeded_init(_factory, seed + 10), adversary.subset(torch.arange(n_private)), config=config, seed=seed + 10
    )
    return private, adversary, test, target, independent


@pytest.mark.slow
def test_stolen_model_is_detected_and_an_independent_one_is_not(fmnist_small):
    # About 2 CPU-minutes: the owner's model is trained on 1,000 private images (it overfits, as dataset
    # inference assumes); the thief extracts it with KL on the other 5,000 images it owns.
    private, adversary, test, target, independent = _owner_and_suspects(fmnist_small, 1000, seed=0)
    surrogate = seeded_init(_factory, 20)
    stolen = ModelExtraction(
        target, surrogate, torch.optim.Adam(surrogate.parameters(), 1e-3), adversary.loader(64), "cpu", 20, "kl"
    ).attack()
    args = (private.loader(500), test.loader(500), 10, "cpu", "2D")
    on_stolen = DatasetInference(target, stolen, *args, **DI_ARGS, num_samples=1000).fingerprint()
    on_independent = DatasetInference(target, independent, *args, **DI_ARGS, num_samples=1000).fingerprint()
    assert on_stolen["suspect"]["p-value"] < 0.05, on_stolen
    assert on_independent["suspect"]["p-value"] > 0.05, on_independent
