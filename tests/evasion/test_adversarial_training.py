"""AdversarialTrainingPGD and its recipe stage raise robust accuracy over the undefended model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.defenses import AdversarialTrainingPGD, pgd_batch_transform
from amulet.evasion.metrics import robust_accuracy
from amulet.exceptions import InvalidParameterError
from amulet.utils import TensorData, get_accuracy, make_generator


def _robust(model, test, eps=0.1):
    adv = EvasionPGD(model, test.loader(1000), "cpu", 1000, epsilon=eps, iterations=10, step_size=eps / 4).attack()
    return robust_accuracy(model, adv, "cpu")


def test_adversarial_training_raises_robust_accuracy(fmnist_model, fmnist_robust_model, fmnist_tensors):
    _, test = fmnist_tensors
    plain, robust = _robust(fmnist_model, test), _robust(fmnist_robust_model, test)
    assert robust > plain + 20, (plain, robust)
    assert get_accuracy(fmnist_robust_model, test.loader(1000), "cpu") > 60


def test_batch_transform_mixes_the_requested_share_of_clean_rows():
    torch.manual_seed(0)  # test-only toy model
    model = nn.Sequential(nn.Linear(5, 3))
    x, y = torch.rand(10, 5), torch.randint(0, 3, (10,))
    transform = pgd_batch_transform(epsilon=0.2, step_size=0.1, iterations=3, clip_min=0.0, clip_max=1.0, mix_clean=0.3)
    x_new, y_new = transform(model, x, y, make_generator(0))
    unchanged = (x_new == x).all(1)
    assert int(unchanged.sum()) == 3
    assert torch.equal(y_new, y)
    assert (x_new - x).abs().max() <= 0.2 + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"epochs": -1}, "epochs", "an int in the range [0, inf]"),
        ({"label_source": "gold"}, "label_source", "one of {'predicted', 'true'}"),
        ({"clean_step": "yes"}, "clean_step", "an instance of bool"),
        ({"clip_min": 1.0, "clip_max": 0.0}, "clip_max", "a float in the range (1, inf)"),
    ],
)
def test_bad_parameters_are_refused_at_construction(kwargs, name, allowed):
    model = nn.Linear(4, 2)
    loader = TensorData(torch.rand(4, 4), torch.zeros(4, dtype=torch.long)).loader(2)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of AdversarialTrainingPGD") as error:
        AdversarialTrainingPGD(
            model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), loader, "cpu", **kwargs
        )
    assert isinstance(error.value, ValueError)
    assert allowed in str(error.value)
