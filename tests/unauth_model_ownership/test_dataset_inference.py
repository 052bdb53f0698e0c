"""DatasetInference (MinGD + regressor + Welch t-test) on census and Fashion-MNIST, with its power analysis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from amulet.models import LinearNet
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import DatasetInference, mingd_distances
from amulet.unauth_model_ownership.defenses._dataset_inference import welch_power
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
    assert on_stolen["target"]["p-value"] < 0.05, on_stolen
    assert not on_stolen["power"]["underpowered"], on_stolen["power"]
    assert on_stolen["suspect"]["p-value"] < 0.05, on_stolen
    assert on_independent["suspect"]["p-value"] > 0.05, on_independent


def test_welch_power_matches_the_normal_approximation_and_grows_with_samples():
    # one-sided, alpha 0.05: power = Phi(d sqrt(n/2) - z_0.95) up to the t/normal difference
    for d, n in ((0.5, 50), (0.2, 300), (0.1, 1000)):
        expected = stats.norm.cdf(d * np.sqrt(n / 2) - stats.norm.ppf(0.95))
        assert welch_power(d, n) == pytest.approx(expected, abs=0.01)
    assert welch_power(0.3, 500) > welch_power(0.3, 50) > welch_power(0.0, 50) == pytest.approx(0.05, abs=1e-6)


def _census_owner_thief_and_stranger(census):
    """The owner fits 1,000 private rows (60 epochs: 96 % train vs 80 % test accuracy); the thief extracts it
    with 6,000 rows of its own; a stranger trains the same way on 1,000 disjoint rows. Public rows are 2,000
    further rows of the same (training) split, so that no model has a distribution shift between the two sets.
    """
    data = TensorData.from_numpy(census.x_train, census.y_train)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    private, thief, stranger, public = (
        data.subset(order[a:b]) for a, b in ((0, 1000), (1000, 7000), (7000, 8000), (8000, 10000))
    )
    factory = lambda: LinearNet(census.num_features, 2, hidden_layer_sizes=[64, 32])  # noqa: E731
    config = TrainConfig(epochs=60)
    target = train_model(seeded_init(factory, 0), private, config=config, seed=0)
    independent = train_model(seeded_init(factory, 5), stranger, config=config, seed=5)
    surrogate = seeded_init(factory, 1)
    stolen = ModelExtraction(
        target,
        surrogate,
        torch.optim.Adam(surrogate.parameters(), lr=1e-3),
        thief.loader(128),
        "cpu",
        epochs=30,
        loss_type="mse",
        seed=0,
    ).attack()
    return private, public, target, stolen, independent


def test_census_target_and_extracted_copy_flagged_independent_model_cleared(census):
    # Before: 100 samples (50 tested per group) and label-free sorted distances: the copy got p ~ 0.2-0.6.
    private, public, target, stolen, independent = _census_owner_thief_and_stranger(census)
    args = (private.loader(500), public.loader(500), 2, "cpu", "1D")
    on_stolen = DatasetInference(target, stolen, *args).fingerprint()
    on_independent = DatasetInference(target, independent, *args).fingerprint()
    assert on_stolen["target"]["p-value"] < 0.05, on_stolen
    assert on_stolen["power"]["n_per_group"] == 500 and not on_stolen["power"]["underpowered"], on_stolen["power"]
    assert on_stolen["suspect"]["p-value"] < 0.05, on_stolen
    assert on_stolen["suspect"]["effect_size"] > 0.1, on_stolen
    assert on_independent["suspect"]["p-value"] > 0.05, on_independent
    assert on_independent["target"] == on_stolen["target"]  # same positive control, same seed


def test_census_well_generalising_target_is_reported_underpowered(census_target, census_stolen, census_split):
    # The 5-epoch census model fits its 3,000 rows barely better than unseen ones: no test on 500 inputs per
    # group can resolve ownership, and the result must say so instead of clearing the stolen copy.
    member, _, test = census_split
    result = DatasetInference(census_target, census_stolen, member.loader(500), test.loader(500), 2, "cpu", "1D")
    out = result.fingerprint()
    power = out["power"]
    assert power["n_per_group"] == 500
    assert power["underpowered"] == (out["target"]["p-value"] >= 0.05 or power["target_power"] < 0.8)
    if out["suspect"]["p-value"] >= 0.05 or out["target"]["p-value"] >= 0.05:
        assert power["underpowered"], out
    assert power["underpowered"], out  # this setup is underpowered: effect ~0.1 standard deviations
    assert "inconclusive" in power["reason"] and power["samples_needed"] > 500, power
    assert result.power_ is power


def test_mingd_on_an_mlp_chain_equals_mingd_through_autograd(seed: int) -> None:
    """MinGD takes the written-out logits and input gradient for an MLP chain: the same distances as autograd's."""
    from amulet.models import LinearNet

    torch.manual_seed(seed)
    model = LinearNet(10, 3, hidden_layer_sizes=[16, 8])
    model.train()
    model(torch.randn(64, 10))  # running statistics that are not the identity
    model.eval()
    x = torch.rand(40, 10, generator=torch.Generator().manual_seed(seed))
    for norm, alpha in (("linf", 0.01), ("l2", 0.05), ("l1", 0.5)):
        by_hand = mingd_distances(model, x, 3, norm=norm, alpha=alpha, num_iter=300, bounds=None)
        handle = model.register_forward_hook(lambda *_: None)  # a hooked model takes autograd
        try:
            through_autograd = mingd_distances(model, x, 3, norm=norm, alpha=alpha, num_iter=300, bounds=None)
        finally:
            handle.remove()
        torch.testing.assert_close(by_hand, through_autograd, rtol=0, atol=1e-5)
        assert float(by_hand.max()) > 0
