"""Upstream-compatible training and evaluation utilities."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from amulet.utils import (
    TensorData,
    create_dir,
    get_accuracy,
    get_fidelity,
    get_intermediate_features,
    get_predictions_numpy,
    load_or_train,
    train_classifier,
)


def _data(n: int = 300) -> TensorData:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen)
    return TensorData(x, (x.sum(1) > 0).long())


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def get_hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_train_classifier_learns_and_returns_eval_mode():
    torch.manual_seed(0)
    data = _data()
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model = train_classifier(model, data.loader(32, shuffle=True, seed=0), nn.CrossEntropyLoss(), opt, 10, "cpu")
    assert not model.training
    assert get_accuracy(model, data.loader(64), "cpu") > 90


def test_train_classifier_early_stopping_restores_best():
    data = _data(64)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # loss never improves after the first epoch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_classifier(model, data.loader(16), nn.CrossEntropyLoss(), opt, 50, "cpu", early_stopping_patience=2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_fidelity_and_predictions():
    data = _data(50)
    a, b = _Net(), _Net()
    assert get_fidelity(a, a, data.loader(7), "cpu") == 100.0
    logits = get_predictions_numpy(data.x.numpy(), a, 16, "cpu")
    assert logits.shape == (50, 2)
    np.testing.assert_allclose(logits, a(data.x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert 0.0 <= get_fidelity(a, b, data.loader(7), "cpu") <= 100.0


def test_intermediate_features_any_batch_size():
    data = _data(33)
    feats, targets, inputs = get_intermediate_features(_Net(), data.loader(16), "cpu")  # last batch of one
    assert feats.shape == (33, 8) and targets.shape == (33,) and inputs.shape == (33, 4)
    assert feats.dtype == np.float32


def test_load_or_train_trains_once_then_loads(tmp_path):
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return model

    path = create_dir(tmp_path / "ckpt") / "m.pt"
    first = load_or_train(path, _Net, train)
    second = load_or_train(path, _Net, train)
    assert calls == [1]
    for p1, p2 in zip(first.parameters(), second.parameters()):
        assert torch.equal(p1, p2)


def test_tensordata_alignment_and_errors():
    import pytest

    data = TensorData(torch.zeros(4, 2), torch.arange(4), torch.arange(4).unsqueeze(1))
    sub = data.subset([3, 1])
    assert sub.y.tolist() == [3, 1] and sub.z.squeeze(1).tolist() == [3, 1]
    assert len(list(data.loader(2, with_z=True))) == 2
    with pytest.raises(ValueError, match="same length"):
        TensorData(torch.zeros(3, 2), torch.arange(4))
