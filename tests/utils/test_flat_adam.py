"""flat_adam: the caller's Adam stepped over flat buffers gives exactly optimizer.step()'s numbers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.utils import flat_adam

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return LinearNet(10, 3, hidden_layer_sizes=[16, 8])


def _batches(seed: int, steps: int = 30) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g)) for _ in range(steps)]


def _pair(seed: int) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    """Two equal models, each with its own Adam: one trained by optimizer.step(), the other through flat_adam."""
    a, b = _model(seed), _model(seed)
    return a, b, torch.optim.Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)


def _train_stock(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list) -> None:
    model.train()
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _train_flat(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list) -> bool:
    model.train()
    with flat_adam(optimizer) as steps:
        for x, y in batches:
            steps.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            steps.step()
        return steps.flat


def _assert_same(a: nn.Module, b: nn.Module, opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer) -> None:
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    for pa, pb in zip(a.parameters(), b.parameters()):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
            assert sa[key].dtype == sb[key].dtype


FACTORIES: dict[str, OptimizerFactory] = {
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
    "adam-l2": lambda m: torch.optim.Adam(m.parameters(), lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2),
    "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1),
    "two-groups": lambda m: torch.optim.Adam(
        [
            {"params": [p for n, p in m.named_parameters() if n.endswith("weight")], "lr": 1e-2},
            {"params": [p for n, p in m.named_parameters() if not n.endswith("weight")], "eps": 1e-4},
        ],
        lr=3e-3,
    ),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_flat_steps_equal_optimizer_steps_bit_for_bit(name: str, seed: int) -> None:
    batches = _batches(seed)
    a, b = _model(seed), _model(seed)
    opt_a, opt_b = FACTORIES[name](a), FACTORIES[name](b)
    _train_stock(a, opt_a, batches)
    assert _train_flat(b, opt_b, batches)
    _assert_same(a, b, opt_a, opt_b)
    # leaving the context gives every parameter its own storage and the optimizer a usable state: a resumed
    # run (stock on one side, flat again on the other) stays identical
    assert len({p.untyped_storage().data_ptr() for p in b.parameters()}) == len(list(b.parameters()))
    more = _batches(seed + 1, 10)
    _train_stock(a, opt_a, more)
    assert _train_flat(b, opt_b, more)
    _assert_same(a, b, opt_a, opt_b)
    assert opt_b.state_dict()["state"][0]["step"].item() == 40


def test_frozen_parameters_are_left_out(seed: int) -> None:
    batches = _batches(seed)
    a, b = _model(seed), _model(seed)
    for m in (a, b):
        next(m.parameters()).requires_grad_(False)
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    _train_stock(a, opt_a, batches)
    assert _train_flat(b, opt_b, batches)
    _assert_same(a, b, opt_a, opt_b)
    assert next(b.parameters()).grad is None


class _TwoHeads(nn.Module):
    """A model whose second head gets no gradient on every third call (torch's Adam then skips it)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(10, 8)
        self.head = nn.Linear(8, 3)
        self.other = nn.Linear(8, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = torch.relu(self.body(x))
        return self.head(h) + self.other(h) if self.calls % 3 else self.head(h)


@pytest.mark.parametrize("first_step_complete", [True, False])
def test_a_parameter_without_gradient_falls_back_to_the_optimizer(seed: int, first_step_complete: bool) -> None:
    batches = _batches(seed)
    models = []
    for _ in range(2):
        torch.manual_seed(seed)
        model = _TwoHeads()
        # the first step's backward reaches every parameter (a later one does not), or it does not
        model.calls = 0 if first_step_complete else 2
        models.append(model)
    a, b = models
    opt_a, opt_b = torch.optim.Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    _train_stock(a, opt_a, batches)
    assert not _train_flat(b, opt_b, batches)
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize(
    "factory",
    [
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
        lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, amsgrad=True),
        lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, fused=True),
        lambda m: torch.optim.Adam(m.parameters(), lr=torch.tensor(1e-2)),
    ],
    ids=["sgd", "amsgrad", "fused", "tensor-lr"],
)
def test_other_optimizers_run_as_they_are(seed: int, factory: OptimizerFactory) -> None:
    batches = _batches(seed, 10)
    a, b = _model(seed), _model(seed)
    opt_a, opt_b = factory(a), factory(b)
    _train_stock(a, opt_a, batches)
    assert not _train_flat(b, opt_b, batches)
    _assert_same(a, b, opt_a, opt_b)


def test_a_scheduler_keeps_the_optimizer_own_steps(seed: int) -> None:
    model = _model(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    assert not _train_flat(model, optimizer, _batches(seed, 3))
    scheduler.step()  # no "lr_scheduler.step() before optimizer.step()" warning: the optimizer's own step ran
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_a_gradient_replaced_by_the_caller_is_used(seed: int) -> None:
    """module.zero_grad() between the steps' zero_grad and backward gives fresh gradient tensors."""
    batches = _batches(seed, 10)
    a, b, opt_a, opt_b = _pair(seed)
    _train_stock(a, opt_a, batches)
    b.train()
    with flat_adam(opt_b) as steps:
        for x, y in batches:
            steps.zero_grad()
            b.zero_grad()
            nn.functional.cross_entropy(b(x), y).backward()
            steps.step()
        assert steps.flat
    _assert_same(a, b, opt_a, opt_b)


def test_a_nested_block_over_the_same_optimizer_shares_the_outer_one(seed: int) -> None:
    """A training loop called inside another's block (same optimizer) steps the outer block's live state."""
    batches = _batches(seed, 12)
    a, b, opt_a, opt_b = _pair(seed)
    _train_stock(a, opt_a, batches)
    b.train()
    with flat_adam(opt_b) as outer:
        for i, (x, y) in enumerate(batches):
            if i % 3 == 2:  # every third step through an inner block
                with flat_adam(opt_b) as inner:
                    assert inner is outer
                    inner.zero_grad()
                    nn.functional.cross_entropy(b(x), y).backward()
                    inner.step()
                assert outer.flat  # leaving the inner block did not write the state back under the outer one
                continue
            outer.zero_grad()
            nn.functional.cross_entropy(b(x), y).backward()
            outer.step()
    _assert_same(a, b, opt_a, opt_b)
