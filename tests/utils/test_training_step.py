"""The written-out training step equals autograd's bit for bit, over whole trainings; anything else takes autograd."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from amulet.models import LinearNet
from amulet.utils import flat_adam, initialize_model
from amulet.utils._training_step import TrainingStep


def _train(
    model: nn.Module, criterion: nn.Module, batches: list, *, written: bool, optimizer: str = "adam"
) -> tuple[nn.Module, list[float], bool]:
    """Train a copy of ``model`` over ``batches`` with the written-out step (if it applies) or with autograd."""
    model = copy.deepcopy(model).train()
    opt = (
        torch.optim.Adam(model.parameters(), lr=1e-2)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    )
    losses, used = [], False
    with flat_adam(opt) as steps:
        step = TrainingStep(model, criterion, steps)
        for x, y in batches:
            steps.zero_grad()
            if written:
                used = used or step._applies(x, y)
                loss = step(x, y)
            else:
                loss = criterion(model(x), y)
                loss.backward()
            steps.step()
            losses.append(loss.item())
    return model, losses, used


def _assert_identical(a: nn.Module, b: nn.Module) -> None:
    for (name, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), name


def _batches(seed: int, n_batches: int, rows: int, features: int, classes: int = 2) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_batches):
        x = torch.rand(rows - (i % 3 == 2), features, generator=g)  # some batches a row shorter
        out.append((x, torch.randint(0, classes, (len(x),), generator=g)))
    return out


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_linearnet_training_equals_autograd_bit_for_bit(batch_norm: bool, optimizer: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = initialize_model("linearnet", "m1", 20, 3, batch_norm=batch_norm)
    batches = _batches(seed, 12, 64, 20, 3)
    written, losses, used = _train(model, nn.CrossEntropyLoss(), batches, written=True, optimizer=optimizer)
    autograd, want, _ = _train(model, nn.CrossEntropyLoss(), batches, written=False, optimizer=optimizer)
    assert used
    assert losses == want
    _assert_identical(written, autograd)  # weights, and BatchNorm's running statistics and batch counts


@pytest.mark.parametrize("momentum", [None, 0.3])
def test_batchnorm_momentum_and_mse_equal_autograd(momentum: float | None, seed: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16, momentum=momentum), nn.ReLU(),
                          nn.Linear(16, 4, bias=False))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(10, 3, 4, generator=g), torch.randn(10, 4, generator=g)) for _ in range(6)]
    written, losses, used = _train(model, nn.MSELoss(), batches, written=True)
    autograd, want, _ = _train(model, nn.MSELoss(), batches, written=False)
    assert used and losses == want
    _assert_identical(written, autograd)


def _one_step(model: nn.Module, criterion: nn.Module, x: torch.Tensor, y: torch.Tensor) -> bool:
    with flat_adam(torch.optim.Adam(model.parameters())) as steps:
        step = TrainingStep(model, criterion, steps)
        applies = step._applies(x, y)
        step(x, y)  # whichever path: it must work and leave gradients
    assert all(p.grad is not None for p in model.parameters())
    return applies


def test_other_losses_layers_and_modes_take_autograd(seed: int) -> None:
    torch.manual_seed(seed)
    x, y = torch.rand(8, 5), torch.randint(0, 2, (8,))

    def mlp() -> nn.Module:
        return LinearNet(5, 2, [8])

    assert _one_step(mlp(), nn.CrossEntropyLoss(), x, y)
    assert not _one_step(mlp(), nn.CrossEntropyLoss(label_smoothing=0.1), x, y)
    assert not _one_step(mlp(), nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])), x, y)
    assert not _one_step(mlp(), nn.CrossEntropyLoss(reduction="sum"), x, y)
    assert not _one_step(nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Linear(8, 2)), nn.CrossEntropyLoss(), x, y)
    assert not _one_step(nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)), nn.CrossEntropyLoss(), x, y)
    half_eval = mlp()
    half_eval.features[2].eval()  # a BatchNorm normalising with its running statistics
    assert not _one_step(half_eval, nn.CrossEntropyLoss(), x, y)
    hooked = mlp()
    hooked.features[1].register_forward_hook(lambda *_: None)
    assert not _one_step(hooked, nn.CrossEntropyLoss(), x, y)
    tensor_hooked = mlp()
    tensor_hooked.classifier.weight.register_hook(lambda g: g * 2)
    assert not _one_step(tensor_hooked, nn.CrossEntropyLoss(), x, y)
    transposed = nn.Sequential(nn.Linear(5, 2))
    transposed[0].weight = nn.Parameter(torch.randn(5, 2).t())  # not contiguous: autograd takes another product
    assert not _one_step(transposed, nn.CrossEntropyLoss(), x, y)
    with pytest.warns(UserWarning, match="target size"):  # broadcast targets: autograd, with torch's warning
        assert not _one_step(mlp(), nn.MSELoss(), x, torch.rand(8, 1))


def test_a_batch_of_one_under_batchnorm_raises_the_models_explanation() -> None:
    model = LinearNet(5, 2, [8])
    with flat_adam(torch.optim.Adam(model.parameters())) as steps, pytest.raises(ValueError, match="batch"):
        TrainingStep(model, nn.CrossEntropyLoss(), steps)(torch.rand(1, 5), torch.tensor([1]))
