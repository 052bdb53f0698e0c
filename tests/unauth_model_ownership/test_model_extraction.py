"""ModelExtraction and evaluate_extraction on census; hand-checked metrics; loss types; query budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.metrics import evaluate_extraction
from amulet.utils import TensorData, seeded_init

from .conftest import census_factory


def test_census_extraction_with_the_adversary_half_reaches_90_percent_fidelity(
    census_target, census_stolen, census_split
):
    _, _, test = census_split
    scores = evaluate_extraction(census_target, census_stolen, test.loader(500), "cpu")
    assert scores["fidelity"] > 90, scores
    assert scores["stolen_accuracy"] > 75 and scores["target_accuracy"] > 75, scores
    assert 0 <= scores["correct_fidelity"] <= 100


class _Fixed(nn.Module):
    """Predicts the class stored for each input's first feature (a lookup table), for exact metric checks."""

    def __init__(self, predictions: list[int]):
        super().__init__()
        self.predictions = torch.tensor(predictions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(self.predictions[x[:, 0].long()], 3).float()


def test_metrics_match_a_hand_computed_example_and_never_divide_by_zero():
    x = torch.arange(6).float().unsqueeze(1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    target = _Fixed([0, 1, 2, 1, 1, 0])  # right on 0, 1, 2, 4
    stolen = _Fixed([0, 2, 2, 1, 0, 0])  # agrees on 0, 2, 3, 5; right on 0, 2
    scores = evaluate_extraction(target, stolen, TensorData(x, y).loader(4), "cpu")
    assert scores["target_accuracy"] == pytest.approx(400 / 6)
    assert scores["stolen_accuracy"] == pytest.approx(200 / 6)
    assert scores["fidelity"] == pytest.approx(400 / 6)
    assert scores["correct_fidelity"] == pytest.approx(50.0)  # of the 4 agreements, 2 are correct
    never = _Fixed([1, 2, 0, 2, 2, 1])  # agrees with target nowhere
    assert evaluate_extraction(target, never, TensorData(x, y).loader(4), "cpu")["correct_fidelity"] == 0.0
    empty = TensorData(torch.empty(0, 1), torch.empty(0, dtype=torch.long)).loader(4)
    assert evaluate_extraction(target, stolen, empty, "cpu") == {
        "target_accuracy": 0.0,
        "stolen_accuracy": 0.0,
        "fidelity": 0.0,
        "correct_fidelity": 0.0,
    }


@pytest.mark.parametrize("loss_type", ["mse", "kl", "ce"])
def test_every_loss_type_steals_the_census_model(loss_type, census_target, census_split):
    _, adversary, test = census_split
    surrogate = seeded_init(lambda: census_factory(adversary.x.shape[1]), 2)
    attack = ModelExtraction(
        census_target,
        surrogate,
        torch.optim.Adam(surrogate.parameters(), lr=1e-3),
        adversary.loader(64),
        "cpu",
        epochs=8,
        loss_type=loss_type,
        query_budget=1000,
    )
    stolen = attack.attack()
    assert attack.n_queries_ == 1000
    assert evaluate_extraction(census_target, stolen, test.loader(1000), "cpu")["fidelity"] > 80


def test_unknown_loss_type_is_a_value_error_naming_the_parameter(census_target):
    model = nn.Linear(97, 2)
    with pytest.raises(ValueError, match="'loss_type' parameter of ModelExtraction") as err:
        ModelExtraction(  # refused at construction, as upstream
            census_target,
            model,
            torch.optim.SGD(model.parameters(), 0.1),
            TensorData(torch.rand(4, 97), torch.zeros(4)).loader(2),
            "cpu",
            loss_type="hinge",
        )
    assert isinstance(err.value, InvalidParameterError)
    assert "one of {'ce', 'kl', 'mse'}" in str(err.value)
