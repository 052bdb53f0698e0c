"""EvasionPGD attacks the loader's batches together: the examples equal attacking each batch in turn."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.attacks import _pgd as pgd_module
from amulet.evasion.attacks._pgd import pgd_linf, predicted_labels
from amulet.utils import make_generator


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    model.train()
    model(torch.rand(64, 12))  # BatchNorm statistics that are not the identity
    return model


@pytest.mark.parametrize("label_source", ["predicted", "true"])
@pytest.mark.parametrize("chunk_elements", [1 << 22, 12 * 40])
def test_batched_examples_equal_the_batch_by_batch_attack(monkeypatch, label_source: str, chunk_elements: int) -> None:
    monkeypatch.setattr(pgd_module, "CHUNK_ELEMENTS", chunk_elements)  # one chunk, or a chunk of ~ one batch
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(150, 12, generator=g), torch.randint(0, 3, (150,), generator=g)
    model = _model()
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    attack = EvasionPGD(model, loader, "cpu", 32, epsilon=0.1, iterations=7, step_size=0.02, seed=4,
                        label_source=label_source)  # fmt: skip
    adversarial = attack.attack()
    generator = make_generator(4)
    expected = []
    for xb, yb in loader:
        target = predicted_labels(model, xb) if label_source == "predicted" else yb
        expected.append(pgd_linf(model, xb, target, epsilon=0.1, step_size=0.02, iterations=7, generator=generator))
    reference = torch.cat(expected)
    torch.testing.assert_close(attack.adversarial_examples_, reference, atol=1e-6, rtol=0)
    assert not torch.equal(reference, x)  # the attack moved the inputs
    got_y = torch.cat([b[1] for b in adversarial])
    assert torch.equal(got_y, y) and model.training  # true labels back, the model's mode restored
