"""The debiasing adversary's hand-written gradients equal autograd's bit for bit, step by step and over a run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from amulet.discriminatory_behavior.defenses import AdversarialDebiasing, AdversaryModel
from amulet.discriminatory_behavior.defenses._adversary_gradients import adversary_gradients, hand_written
from amulet.discriminatory_behavior.defenses._debiasing_loop import _adversary_losses
from amulet.progress import Progress, ProgressEvent
from amulet.utils import TensorData, flat_adam


def _autograd(adversary: AdversaryModel, outputs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, dict]:
    adversary.zero_grad(set_to_none=True)
    loss = _adversary_losses(adversary, outputs, z).mean()  # the debiasing loop's autograd loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in adversary.named_parameters()}


@pytest.mark.parametrize(("n_sensitive", "n_input", "rows"), [(1, 2, 37), (2, 2, 128), (3, 5, 1), (2, 10, 100)])
def test_loss_and_gradients_equal_autograd_bit_for_bit(n_sensitive: int, n_input: int, rows: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    adversary = AdversaryModel(n_sensitive, n_input)
    outputs = torch.randn(rows, n_input, generator=gen) * 3
    z = torch.randint(0, 2, (rows, n_sensitive), generator=gen).float()
    assert hand_written(adversary)
    loss, grads = adversary_gradients(adversary, outputs, z)
    want_loss, want = _autograd(adversary, outputs, z)
    names = {id(p): name for name, p in adversary.named_parameters()}
    assert torch.equal(loss, want_loss)
    assert sorted(names[id(p)] for p, _ in grads) == sorted(want)
    for p, g in grads:
        assert torch.equal(g, want[names[id(p)]]), names[id(p)]


def test_gradients_without_the_loss_are_the_same(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    adversary = AdversaryModel(2, 2)
    outputs, z = torch.randn(50, 2, generator=gen), torch.randint(0, 2, (50, 2), generator=gen).float()
    loss, grads = adversary_gradients(adversary, outputs, z, with_loss=False)
    assert loss is None
    for (p, g), (q, want) in zip(grads, adversary_gradients(adversary, outputs, z)[1]):
        assert p is q and torch.equal(g, want)


def test_debiasing_leaves_the_modes_and_reports_each_epochs_losses(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 4, generator=gen)
    data = TensorData(x, (x[:, 0] > 0).long(), torch.stack([x[:, 1] > 0, x[:, 2] > 0], 1).long())
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))
    model[1].eval()  # a submodule left in eval mode by the caller: the loop still switches the whole tree
    loader = data.loader(16, with_z=True)
    reports: list[dict] = []

    class Recorder(Progress):
        def emit(self, event: ProgressEvent) -> None:
            if event.kind == "advance":
                reports.append(dict(event.info))

    defense = AdversarialDebiasing(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), loader, loader, 2, 2,
        [2.0, 2.0], "cpu", epochs=2, pretrain_adversary_epochs=1, progress=Recorder(),
    )  # fmt: skip
    defense.train_fair()
    # the classifier's steps ran with the whole tree in training mode: the BatchNorm tracked its batches
    assert int(model[1].num_batches_tracked) > 0 and not torch.equal(model[1].running_mean, torch.zeros(8))
    assert not any(m.training for m in model.modules()) and not defense.adversary_.training
    losses = [r["adversary_loss"] for r in reports if "adversary_loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)


def test_anything_but_the_plain_adversary_takes_autograd() -> None:
    assert hand_written(AdversaryModel(2, 2))
    hooked = AdversaryModel(2, 2)
    hooked.network[2].register_forward_hook(lambda *_: None)
    assert not hand_written(hooked)

    class Wider(AdversaryModel):
        pass

    assert not hand_written(Wider(2, 2))
    tanh = AdversaryModel(2, 2)
    tanh.network[1] = nn.Tanh()
    assert not hand_written(tanh)
    frozen = AdversaryModel(2, 2)
    frozen.network[0].weight.requires_grad_(False)
    assert not hand_written(frozen)
    tensor_hook = AdversaryModel(2, 2)
    tensor_hook.network[0].bias.register_hook(lambda g: g * 2)
    assert not hand_written(tensor_hook)
    assert not hand_written(nn.Sequential(nn.Linear(2, 2)))


def test_add_grads_steps_flat_adam_as_backward_does(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    outputs = [torch.randn(16, 2, generator=gen) for _ in range(5)]
    zs = [torch.randint(0, 2, (16, 2), generator=gen).float() for _ in range(5)]
    runs = []
    for by_hand in (True, False):
        torch.manual_seed(seed)
        adversary = AdversaryModel(2, 2)
        optimizer = torch.optim.Adam(adversary.parameters(), lr=1e-2)
        with flat_adam(optimizer) as steps:
            for out, z in zip(outputs, zs):
                steps.zero_grad()
                if by_hand:
                    steps.add_grads(adversary_gradients(adversary, out, z)[1])
                else:
                    _adversary_losses(adversary, out, z).mean().backward()
                steps.step()
            assert steps.flat  # hand-written gradients count as received: the flat buffers stay in use
        runs.append((adversary.state_dict(), optimizer.state_dict()["state"]))
    (params, state), (want_params, want_state) = runs
    assert all(torch.equal(params[k], want_params[k]) for k in want_params)
    for index, entry in want_state.items():
        assert all(torch.equal(state[index][k], v) for k, v in entry.items())


def test_a_debiasing_run_is_identical_with_autograd_for_the_adversary(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 5, generator=gen)
    data = TensorData(x, ((x[:, 0] + x[:, 2]) > 0).long(), torch.stack([x[:, 0] > 0, x[:, 1] > 0], 1).long())
    runs = []
    for with_autograd in (False, True):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
        loader = data.loader(16, with_z=True)
        defense = AdversarialDebiasing(
            model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), loader, loader, 2, 2,
            torch.tensor([5.0, 5.0]), "cpu", epochs=3, pretrain_adversary_epochs=2,
        )  # fmt: skip
        # The adversary is built inside train_fair: a global no-op forward hook makes it take autograd
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *_: None) if with_autograd else None
        try:
            assert hand_written(AdversaryModel(2, 2)) is not with_autograd
            defense.train_fair()
        finally:
            if handle is not None:
                handle.remove()
        runs.append(defense)
    plain, autograd = runs
    assert plain.n_adversary_steps_ == autograd.n_adversary_steps_ > 0
    for a, b in zip(plain.model.state_dict().values(), autograd.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(plain.adversary_.state_dict().values(), autograd.adversary_.state_dict().values()):
        assert torch.equal(a, b)
