"""Model inversion and similarity metrics on small hand-made models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.exceptions import InvalidParameterError


def _linear(n_in: int = 4, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out)


def test_logits_and_probability_models_give_the_same_reconstruction() -> None:
    logits = _linear()
    probs = nn.Sequential(logits, nn.Softmax(dim=1))
    a = FredriksonCCS2015(logits, (4,), 3, "cpu", alpha=40, lamda=0.5)
    b = FredriksonCCS2015(probs, (4,), 3, "cpu", alpha=40, lamda=0.5)
    ra, rb = a.attack(), b.attack()
    assert a.output_type_ == "logits" and b.output_type_ == "probabilities"
    for x, y in zip(ra, rb):
        torch.testing.assert_close(x, y)


def test_get_reconstructed_data_is_the_upstream_name_of_attack() -> None:
    """Earlier upstream versions called the attack ``get_reconstructed_data``: same reconstructions."""
    first = FredriksonCCS2015(_linear(), (4,), 3, "cpu", alpha=40, lamda=0.5).attack()
    again = FredriksonCCS2015(_linear(), (4,), 3, "cpu", alpha=40, lamda=0.5).get_reconstructed_data()
    assert len(again) == 3
    for x, y in zip(first, again, strict=True):
        torch.testing.assert_close(x, y)


def test_reconstruction_raises_class_confidence_and_keeps_best() -> None:
    model = _linear()
    attack = FredriksonCCS2015(model, (4,), 3, "cpu", alpha=200, beta=20, gamma=0.0, lamda=0.5)
    recs = attack.attack()
    with torch.no_grad():
        start = torch.softmax(model(torch.zeros(1, 4)), 1)[0]
        for c, x in enumerate(recs):
            p = torch.softmax(model(x[None]), 1)[0]
            assert p[c] > start[c]
            assert p.argmax().item() == c
            assert 1 - p[c].item() == pytest.approx(attack.costs_[c], abs=1e-6)


def test_gamma_stops_early() -> None:
    attack = FredriksonCCS2015(_linear(), (4,), 3, "cpu", alpha=10_000, gamma=0.5, lamda=0.5)
    attack.attack()
    assert all(c <= 0.5 for c in attack.costs_)
    assert max(attack.n_iter_) < 10_000


def test_beta_patience_stops_when_no_progress() -> None:
    class Flat(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # constant output: the cost never improves
            return torch.zeros(len(x), 2) + 0 * x.sum()

    attack = FredriksonCCS2015(Flat(), (3,), 2, "cpu", alpha=1000, beta=5, lamda=0.1)
    attack.attack()
    assert attack.n_iter_ == [6, 6]


def test_alpha_caps_iterations_and_clip_range() -> None:
    attack = FredriksonCCS2015(
        _linear(), (4,), 3, "cpu", alpha=7, beta=100, gamma=0.0, lamda=5.0, clip_range=(0.0, 1.0)
    )
    recs = attack.attack()
    assert attack.n_iter_ == [7, 7, 7]
    assert all(float(r.min()) >= 0.0 and float(r.max()) <= 1.0 for r in recs)


def test_input_size_with_or_without_batch_dimension() -> None:
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    cnn(torch.zeros(1, 1, 8, 8))
    r1 = FredriksonCCS2015(cnn, (1, 8, 8), 3, "cpu", alpha=5).attack()
    r2 = FredriksonCCS2015(cnn, (1, 1, 8, 8), 3, "cpu", alpha=5).attack()
    assert tuple(r1[0].shape) == (1, 8, 8) and tuple(r2[0].shape) == (1, 1, 8, 8)
    torch.testing.assert_close(r1[0], r2[0].reshape(1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": 5, "lamda": -1.0}, "lamda"),
        ({"alpha": 5, "output_type": "x"}, "output_type"),
    ],
)
def test_bad_parameters_named(kwargs: dict, name: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of FredriksonCCS2015"):
        FredriksonCCS2015(_linear(), (4,), 3, "cpu", **kwargs).attack()


def test_wrong_input_or_output_size_named() -> None:
    with pytest.raises(InvalidParameterError, match="'input_size' parameter"):
        FredriksonCCS2015(_linear(), (5,), 3, "cpu", alpha=3).attack()
    with pytest.raises(InvalidParameterError, match="'output_size' parameter"):
        FredriksonCCS2015(_linear(), (4,), 4, "cpu", alpha=3).attack()


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_similarity_images_any_batch_size(batch_size: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(40, 1, 9, 9, generator=gen)
    y = torch.arange(40) % 2
    recs = [torch.rand(1, 9, 9, generator=gen) for _ in range(2)]
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=batch_size), recs, (1, 9, 9), 2, "cpu")
    data_range = float(x.max() - x.min())
    for c in range(2):
        mean = x[y == c].mean(0)
        assert res["class_mse"][c] == pytest.approx(float(((mean - recs[c]) ** 2).mean()), rel=1e-6)
        expected = structural_similarity(
            mean[0].double().numpy(), recs[c][0].double().numpy(), data_range=data_range, win_size=7
        )
        assert res["class_ssim"][c] == pytest.approx(expected, rel=1e-4)
    assert res["mean_mse"] == pytest.approx(np.mean(list(res["class_mse"].values())))


def test_similarity_rgb_and_identical_reconstruction() -> None:
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(10, dtype=torch.long)
    mean = x.mean(0)
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=4), [mean], (3, 8, 8), 1, "cpu")
    assert res["class_mse"][0] == pytest.approx(0.0, abs=1e-12)
    assert res["class_ssim"][0] == pytest.approx(1.0)


def test_similarity_tabular_mse_only_and_empty_class() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
    y = torch.tensor([0, 0])
    recs = [torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)]
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=1), recs, (3,), 2, "cpu")
    assert res["class_mse"][0] == 0.0 and math.isnan(res["class_mse"][1])
    assert res["mean_mse"] == 0.0 and res["mean_numeric_mse"] == 0.0
    assert "mean_ssim" not in res and "all treated as numeric" in res["layout"]


def test_similarity_shape_mismatch_named() -> None:
    loader = DataLoader(TensorDataset(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(InvalidParameterError, match="'input_size' parameter of evaluate_similarity"):
        evaluate_similarity(loader, [torch.zeros(3)], (4,), 1, "cpu")
    with pytest.raises(InvalidParameterError, match="'reverse_data' parameter of evaluate_similarity"):
        evaluate_similarity(loader, [torch.zeros(3)], (3,), 2, "cpu")
