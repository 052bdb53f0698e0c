"""Ghost clipping: the clipped per-sample gradient sum without per-sample gradients, against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from amulet.membership_inference.defenses import DPSGD, dp_train
from amulet.membership_inference.defenses._dp_gradients import (
    clipped_sum_ghost,
    clipped_sum_per_sample,
    ghost_layers,
)
from amulet.models import LinearNet


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def _batch(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=g) * 3, torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("clipped", ["all", "some", "none"])
def test_ghost_clipped_sum_equals_the_per_sample_reference(clipped: str) -> None:
    model = _mlp()
    x, y = _batch()
    unclipped = clipped_sum_per_sample(model, x, y, nn.CrossEntropyLoss(), 1e9)[1]
    # a clipping norm below every sample's gradient norm, at their median, above all of them
    max_grad_norm = {"all": 0.5 * unclipped.min(), "some": unclipped.median(), "none": 2 * unclipped.max()}[clipped]
    max_grad_norm = float(max_grad_norm)
    layers = ghost_layers(model)
    assert layers is not None and len(layers) == 3
    ghost = clipped_sum_ghost(model, layers, x, y, nn.CrossEntropyLoss(), max_grad_norm)
    assert ghost is not None
    reference = clipped_sum_per_sample(model, x, y, nn.CrossEntropyLoss(), max_grad_norm)
    torch.testing.assert_close(ghost[1], reference[1], atol=1e-5, rtol=1e-5)  # per-sample norms
    torch.testing.assert_close(ghost[2], reference[2], atol=1e-6, rtol=1e-6)  # mean loss
    assert set(ghost[0]) == set(reference[0]) == set(model.parameters())
    for p in model.parameters():
        torch.testing.assert_close(ghost[0][p], reference[0][p], atol=1e-5, rtol=1e-5)
    if clipped == "none":  # no clipping: the sum is the plain gradient of the summed loss
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
        for p in model.parameters():
            torch.testing.assert_close(ghost[0][p], p.grad, atol=1e-5, rtol=1e-5)


def test_ghost_clipping_on_sequence_inputs_and_frozen_parameters() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6, 2))
    model[0].bias.requires_grad_(False)
    x, y = torch.randn(12, 5, 4), torch.randint(0, 2, (12,))
    layers = ghost_layers(model)
    assert layers is not None
    ghost = clipped_sum_ghost(model, layers, x, y, nn.CrossEntropyLoss(), 0.5)
    reference = clipped_sum_per_sample(model, x, y, nn.CrossEntropyLoss(), 0.5)
    assert ghost is not None and model[0].bias not in ghost[0]
    torch.testing.assert_close(ghost[1], reference[1], atol=1e-5, rtol=1e-5)
    for p, g in reference[0].items():
        torch.testing.assert_close(ghost[0][p], g, atol=1e-5, rtol=1e-5)


def test_layers_ghost_clipping_cannot_cover_fall_back() -> None:
    assert ghost_layers(nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(1, 4), nn.Linear(4, 2))) is None
    shared = nn.Linear(4, 4)
    assert ghost_layers(nn.Sequential(shared, nn.ReLU(), shared)) is not None  # one layer, called twice ...
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    layers = ghost_layers(nn.Sequential(shared, nn.ReLU(), shared))
    assert clipped_sum_ghost(nn.Sequential(shared, nn.ReLU(), shared), layers, x, y, nn.CrossEntropyLoss(), 1.0) is None


def _dp(data, per_sample: str, accountant: str = "rdp", physical: int | None = None):
    torch.manual_seed(0)
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[32, 16], batch_norm=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    return dp_train(
        model, optimizer, data.loader(64), nn.CrossEntropyLoss(), noise_multiplier=0.9, max_grad_norm=1.0,
        delta=1e-5, epochs=2, seed=5, per_sample=per_sample, accountant=accountant, max_physical_batch_size=physical,
    )  # fmt: skip


@pytest.mark.parametrize("physical", [None, 24])
def test_ghost_training_equals_opacus_and_spends_the_same_epsilon(census_rows, physical) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(640))
    ghost, hooks, func = _dp(data, "ghost", physical=physical), _dp(data, "hooks"), _dp(data, "func")
    assert ghost.epsilon == hooks.epsilon == func.epsilon
    assert ghost.steps == hooks.steps == 20 and ghost.sample_rate == hooks.sample_rate
    reference = RDPAccountant()
    reference.history = [(0.9, 64 / 640, 20)]
    assert ghost.epsilon == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    assert ghost.batch_sizes == hooks.batch_sizes and len(set(ghost.batch_sizes)) > 3
    for other in (hooks, func):
        theirs = dict(other.model.named_parameters())
        for name, p in ghost.model.named_parameters():
            torch.testing.assert_close(p, theirs[name], atol=1e-5, rtol=1e-4, msg=name)


def test_layer1_dpsgd_epsilon_is_unchanged_on_the_ghost_path(census_rows) -> None:
    """DPSGD (upstream's API, Opacus' default PRV accountant): the epsilon of sigma, q and steps, as before."""
    train, _ = census_rows
    data = train.subset(np.arange(500))
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=True)
    dp = DPSGD(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), data.loader(50), "cpu",
        1e-5, 1.0, 1.1, False, 3,
    )  # fmt: skip
    private = dp.train_private()
    reference = PRVAccountant()
    reference.history = [(1.1, 0.1, 30)]
    assert dp.steps_ == 30 and dp.sample_rate_ == pytest.approx(0.1)
    assert dp.epsilon_ == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    assert float(dp.privacy_engine.accountant.get_epsilon(1e-5)) == pytest.approx(dp.epsilon_, rel=1e-12)
    assert private.privacy_epsilon_ == dp.epsilon_
    # BatchNorm was replaced by GroupNorm, whose parameters ghost clipping cannot cover: the per-sample fallback
    assert dp.replaced_modules_ and ghost_layers(private) is None
    assert all(not hasattr(p, "grad_sample") for p in private.parameters())
