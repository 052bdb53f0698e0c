"""WhiteBoxPIM trains its fold meta-classifiers at once; each is the one its fold alone would have trained."""

from __future__ import annotations

import torch
from torch import nn

from amulet.distribution_inference.attacks import WhiteBoxPIM
from amulet.distribution_inference.attacks._whitebox_pim import PermutationInvariantMetaClassifier
from amulet.utils import seeded_init


def _alone(
    layers: list[torch.Tensor], labels: torch.Tensor, rows: torch.Tensor, seed: int, lr: float, steps: int
) -> PermutationInvariantMetaClassifier:
    """One fold's meta-classifier trained by itself on its training models (full batch, Adam, mean BCE)."""
    widths = [w.shape[-1] for w in layers]
    meta = seeded_init(lambda: PermutationInvariantMetaClassifier(widths, [16, 4]), seed)
    optimizer = torch.optim.Adam(meta.parameters(), lr=lr)
    inputs = [w[rows] for w in layers]
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(meta(inputs), labels[rows]).backward()
        optimizer.step()
    return meta


def test_folds_trained_together_equal_folds_trained_alone() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 10
    layers = [torch.randn(n, 6, 5, generator=gen), torch.randn(n, 3, 7, generator=gen)]  # (models, neurons, in+1)
    labels = torch.tensor([0.0, 1.0] * 5)
    training = torch.ones(3, n, dtype=torch.bool)
    training[0, [0, 1, 2]] = False
    training[1, [3, 4]] = False
    training[2, [5, 6, 7, 8]] = False  # folds of different sizes
    attack = object.__new__(WhiteBoxPIM)  # only the meta-classifier settings are read
    attack.lr, attack.meta_epochs = 0.01, 25
    together = attack._train_metas(layers, labels, training, [5, 7], [16, 4], [11, 12, 13])
    assert len(together) == 3
    for f, meta in enumerate(together):
        alone = _alone(layers, labels, torch.nonzero(training[f]).flatten(), 11 + f, 0.01, 25)
        for (name, a), b in zip(meta.named_parameters(), alone.parameters()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"fold {f}: {name}")
        assert not meta.training
        with torch.no_grad():
            torch.testing.assert_close(meta(layers), alone(layers), atol=1e-4, rtol=1e-4)
