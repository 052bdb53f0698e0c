"""chain_input_gradient: an eval-mode MLP chain's input gradient by hand equals autograd's; other models get None."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from amulet.evasion.attacks import _pgd, pgd_linf
from amulet.evasion.attacks._pgd import predicted_labels
from amulet.models import LinearNet
from amulet.utils import _input_gradient, chain_input_gradient, chain_logits, chain_logits_and_input_gradient


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(12, 12)
        self.b = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(x + torch.relu(self.a(x)))


CHAINS: dict[str, Callable[[], nn.Module]] = {
    "linearnet": lambda: LinearNet(12, 3, hidden_layer_sizes=[16, 32, 8]),
    "linearnet-no-bn": lambda: LinearNet(12, 3, hidden_layer_sizes=[16, 8], batch_norm=False),
    "no-bias-no-affine-dropout": lambda: nn.Sequential(
        nn.Linear(12, 16, bias=False), nn.BatchNorm1d(16, affine=False), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)
    ),
    "flatten-two-linears": lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Linear(8, 3)),
}


@pytest.mark.parametrize("name", CHAINS)
def test_chain_gradient_equals_autograd(name: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = CHAINS[name]()
    model.train()
    model(torch.rand(64, 12) * 3 - 1)  # running statistics that are not the identity
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    g = torch.Generator().manual_seed(seed)
    shape = (40, 3, 4) if name.startswith("flatten") else (40, 12)
    x, y = torch.rand(*shape, generator=g), torch.randint(0, 3, (40,), generator=g)
    grad = chain_input_gradient(model)
    assert grad is not None
    xa = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
    got = grad(x, y)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        LinearNet(12, 3, hidden_layer_sizes=[8]).train(),  # training mode: batch statistics, dropout
        _Residual().eval(),  # not a chain
        nn.Sequential(
            nn.Linear(12, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 3)
        ).eval(),
    ],
    ids=["training-mode", "residual", "batch-statistics"],
)
def test_other_models_have_no_hand_written_gradient(model: nn.Module) -> None:
    assert chain_input_gradient(model) is None


def test_pgd_on_a_chain_equals_pgd_through_autograd(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """pgd_linf's examples are the same whether the gradient is written out or comes from autograd."""
    torch.manual_seed(seed)
    model = LinearNet(12, 3, hidden_layer_sizes=[32, 16])
    model.train()
    model(torch.rand(64, 12))
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(100, 12, generator=g), torch.randint(0, 3, (100,), generator=g)
    kwargs = {"epsilon": 0.1, "step_size": 0.02, "iterations": 8}
    by_hand = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(1), **kwargs)
    for module in (_input_gradient, _pgd):
        monkeypatch.setattr(module, "chain_input_gradient", lambda model, **_: None)
    through_autograd = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(1), **kwargs)
    torch.testing.assert_close(by_hand, through_autograd, rtol=0, atol=1e-6)
    assert model.training  # the model's mode is restored


def test_a_replaced_layer_is_seen(seed: int) -> None:
    """The traced layers are cached per model; swapping a submodule for another kind traces again."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    assert chain_input_gradient(model) is not None
    model[1] = nn.Tanh()  # not a chain layer any more
    assert chain_input_gradient(model) is None


def test_a_hooked_model_takes_autograd(seed: int) -> None:
    """A forward hook could change what the model computes; the written-out passes would skip it."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    handle = model[1].register_forward_hook(lambda module, inputs, output: output * 2)
    assert chain_input_gradient(model) is None
    handle.remove()
    assert chain_input_gradient(model) is not None
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda *_: None)
    try:
        assert chain_input_gradient(model) is None
    finally:
        handle.remove()


def test_logits_and_gradient_in_one_pass(seed: int) -> None:
    torch.manual_seed(seed)
    model = LinearNet(12, 3, hidden_layer_sizes=[16, 8])
    model.train()
    model(torch.rand(64, 12))
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(50, 12, generator=g), torch.randint(0, 3, (50,), generator=g)
    both = chain_logits_and_input_gradient(model)
    assert both is not None
    logits, grad = both(x, y)
    torch.testing.assert_close(logits, model(x).detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(grad, chain_input_gradient(model)(x, y))


def _trained_chain(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = LinearNet(12, 3, hidden_layer_sizes=[16, 8])
    model.train()
    model(torch.rand(64, 12) * 2)  # running statistics that are not the identity
    return model


def test_chain_logits_as_eval_reads_a_training_model_without_switching_it(seed: int) -> None:
    model = _trained_chain(seed)
    x = torch.rand(30, 12, generator=torch.Generator().manual_seed(seed))
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    assert chain_logits(model) is None  # in training mode the chain would not be what model(x) computes
    logits = chain_logits(model, as_eval=True)
    assert logits is not None
    got = logits(x)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(got, model.eval()(x).detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(predicted_labels(model.train(), x), got.argmax(1))


class _FrozenStatistics(LinearNet):
    """Overrides ``train``: its BatchNorms keep normalising with batch statistics even in eval mode."""

    def train(self, mode: bool = True) -> _FrozenStatistics:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.train(True)
        return self


def test_pgd_reads_a_plain_training_chain_without_switching_it(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    model = _trained_chain(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(40, 12, generator=g), torch.randint(0, 3, (40,), generator=g)
    kwargs = {"epsilon": 0.1, "step_size": 0.02, "iterations": 5}
    expected = pgd_linf(model.eval(), x, y, generator=torch.Generator().manual_seed(2), **kwargs)
    model.train()
    switches: list[bool] = []
    plain_train = nn.Module.train

    def spy(self: nn.Module, mode: bool = True) -> nn.Module:
        switches.append(mode)
        return plain_train(self, mode)

    monkeypatch.setattr(nn.Module, "train", spy)
    got = pgd_linf(model, x, y, generator=torch.Generator().manual_seed(2), **kwargs)
    assert switches == [] and model.training
    assert torch.equal(got, expected)


def test_a_model_that_overrides_train_is_switched(seed: int) -> None:
    torch.manual_seed(seed)
    model = _FrozenStatistics(12, 3, hidden_layer_sizes=[16, 8]).train()
    assert chain_logits(model, as_eval=True) is None
    assert chain_input_gradient(model, as_eval=True) is None
    # its eval mode keeps batch statistics: no chain in eval mode either, and PGD goes through autograd
    assert chain_input_gradient(model.eval()) is None
    x, y = torch.rand(20, 12), torch.randint(0, 3, (20,))
    x_adv = pgd_linf(model.train(), x, y, epsilon=0.1, step_size=0.05, iterations=3)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and model.training
