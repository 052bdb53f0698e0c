"""PGD respects its L-inf budget on every built-in dataset with its default arguments (layer 1), and refuses
inputs outside its clip range instead of silently moving them further than epsilon."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from amulet.evasion.attacks import EvasionPGD, pgd_linf, pgd_linf_stacked
from amulet.evasion.defenses import AdversarialTrainingPGD
from amulet.models import LinearNet
from amulet.utils import TensorData, TrainConfig, get_accuracy, load_data, seeded_init, train_model

#: (dataset, training_size, test_size) for load_data: small, real subsamples.
DATASETS = [
    ("census", 0.05, 0.02),
    ("compas", 0.5, 0.2),
    ("german", 1.0, 1.0),
    ("mnist", 0.3, 0.3),
    ("fmnist", 0.02, 0.03),
]


def _trained(data) -> tuple[nn.Module, TensorData]:
    train = TensorData.from_numpy(data.x_train, data.y_train)
    test = TensorData.from_numpy(data.x_test, data.y_test)
    n_inputs = int(np.prod(data.x_train.shape[1:]))
    model = seeded_init(lambda: LinearNet(n_inputs, data.num_classes, hidden_layer_sizes=[64, 32]), 0)
    model = train_model(model, train, config=TrainConfig(epochs=3, batch_size=128, lr=0.005), seed=0)
    return model, test.subset(torch.arange(min(len(test), 300)))


@pytest.mark.parametrize(("name", "training_size", "test_size"), DATASETS)
def test_default_pgd_stays_within_epsilon_on_every_built_in_dataset(amulet_home, name, training_size, test_size):
    data = load_data(str(amulet_home / "data"), name, training_size=training_size, test_size=test_size, exp_id=0)
    model, test = _trained(data)
    loader = test.loader(100)
    attack = EvasionPGD(model, loader, "cpu", 100)  # every default: epsilon 0.1, clip range [0, 1]
    adversarial = attack.attack()
    x_adv = adversarial.dataset.tensors[0]
    moved = (x_adv - test.x).flatten(1).abs().max(dim=1).values
    assert moved.max().item() <= attack.epsilon + 1e-6, (name, moved.max().item())
    assert moved.min().item() > 0.5 * attack.epsilon, "every row is really attacked, up to the budget"
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert get_accuracy(model, adversarial, "cpu") < get_accuracy(model, loader, "cpu"), name


def _standard_scaled_census(amulet_home) -> TensorData:
    """Census test rows standard-scaled (what the loader produced before min-max scaling): about [-3.5, 13.7]."""
    data = load_data(str(amulet_home / "data"), "census", training_size=0.05, test_size=0.01, exp_id=0)
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    scaled = (data.x_test - mean) / np.where(std > 0, std, 1.0)
    return TensorData.from_numpy(scaled.astype(np.float32), data.y_test)


def test_inputs_outside_the_clip_range_raise_a_value_error_naming_bounds_range_and_fix(amulet_home):
    test = _standard_scaled_census(amulet_home)
    low, high = float(test.x.min()), float(test.x.max())
    assert low < -1 and high > 2
    model = seeded_init(lambda: LinearNet(test.x.shape[1], 2, hidden_layer_sizes=[8]), 0)
    attack = EvasionPGD(model, test.loader(64), "cpu", 64, epsilon=0.05)
    with pytest.raises(ValueError) as caught:
        attack.attack()
    message = str(caught.value)
    assert "clip_min=0.0" in message and "clip_max=1.0" in message
    assert f"[{low:.6g}, {high:.6g}]" in message, "the data's whole range, over every batch"
    assert "Fix:" in message and "scale the data" in message
    # A clip range that covers the data (or none) is accepted, and the ball then holds.
    wide = EvasionPGD(model, test.loader(64), "cpu", 64, epsilon=0.05, clip_min=low, clip_max=high).attack()
    assert (wide.dataset.tensors[0] - test.x).abs().max() <= 0.05 + 1e-6


def test_every_pgd_entry_point_refuses_inputs_outside_its_clip_range(amulet_home):
    test = _standard_scaled_census(amulet_home).subset(torch.arange(32))
    model = seeded_init(lambda: LinearNet(test.x.shape[1], 2, hidden_layer_sizes=[8]), 0)
    kwargs = dict(epsilon=0.05, step_size=0.01, iterations=2, clip_min=0.0, clip_max=1.0)
    with pytest.raises(ValueError, match=r"pgd_linf: the inputs lie in \[-?\d"):
        pgd_linf(model, test.x, test.y, **kwargs)
    with pytest.raises(ValueError, match="pgd_linf_stacked: the inputs lie in"):
        pgd_linf_stacked(
            lambda xx: torch.stack([model(xx[0])]), test.x[None], test.y[None], generators=[torch.Generator()], **kwargs
        )
    defense = AdversarialTrainingPGD(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), test.loader(16), "cpu", epochs=1
    )
    with pytest.raises(ValueError, match=re.escape("clip_min=0.0, clip_max=1.0")):
        defense.train_robust()
    # A one-sided bound is checked on its side only; unbounded inputs are only projected on the ball.
    with pytest.raises(ValueError, match=re.escape("clip_min=0.0, clip_max=None")):
        pgd_linf(model, test.x, test.y, **{**kwargs, "clip_max": None})
    high = float(test.x.max())
    assert (
        pgd_linf(model, test.x, test.y, **{**kwargs, "clip_min": None, "clip_max": high}) - test.x
    ).abs().max() <= 0.05 + 1e-6
    unbounded = pgd_linf(model, test.x, test.y, **{**kwargs, "clip_min": None, "clip_max": None})
    assert (unbounded - test.x).abs().max() <= 0.05 + 1e-6
