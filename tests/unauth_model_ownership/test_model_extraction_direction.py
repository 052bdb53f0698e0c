"""Model extraction and watermark verification point the way the model-stealing risk declares (Fashion-MNIST).

The deliberately vulnerable target is a plain MLP whose logits the adversary may query: a surrogate of the same
architecture trained on 3,000 answered queries must agree with it far above the agreement of a constant guess of
its most frequent prediction, and more queries must steal more than a handful. A target watermarked by
backdooring must be verified as such, and an independently trained model must not be.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direction_testing import cell_context, riskier_in

from amulet import registry
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.unauth_model_ownership._register import watermark_trigger_set
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import WatermarkNN
from amulet.unauth_model_ownership.metrics import evaluate_extraction
from amulet.utils import TensorData, TrainConfig, get_accuracy, seeded_init

RISK = "unauth_model_ownership"
CONFIG = TrainConfig(epochs=3, batch_size=128)


assert_riskier = riskier_in("unauth_model_ownership")


def _factory():
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[128, 64])


@pytest.fixture(scope="module")
def split(fmnist_small):
    """Target's 3,000 training images, the adversary's 3,000 disjoint ones, 1,000 test images."""
    x, y = fmnist_small.x_train, fmnist_small.y_train
    member = TensorData.from_numpy(x[:3000], y[:3000])
    adversary = TensorData.from_numpy(x[3000:6000], y[3000:6000])
    test = TensorData.from_numpy(fmnist_small.x_test[:1000], fmnist_small.y_test[:1000])
    return member, adversary, test


@pytest.fixture(scope="module")
def target(split):
    return Recipe(CONFIG).train(_factory, split[0], seed=1)


def _majority_agreement(model, test: TensorData) -> float:
    """Percent agreement of ``model`` with a constant guess of its own most frequent prediction."""
    with torch.no_grad():
        predicted = model.eval()(test.x).argmax(1).numpy()
    return 100.0 * np.bincount(predicted).max() / len(predicted)


def _steal(target, adversary: TensorData, test: TensorData, budget: int | None) -> dict[str, float]:
    surrogate = seeded_init(_factory, 2)
    attack = ModelExtraction(
        target,
        surrogate,
        torch.optim.Adam(surrogate.parameters(), lr=1e-3),
        adversary.loader(128),
        "cpu",
        epochs=10,
        loss_type="mse",
        query_budget=budget,
    )
    stolen = attack.attack()
    assert attack.n_queries_ == (budget or len(adversary))
    return evaluate_extraction(target, stolen, test.loader(500), "cpu")


def test_extraction_copies_the_target_far_above_majority_agreement(split, target) -> None:
    _, adversary, test = split
    full = _steal(target, adversary, test, None)
    majority = _majority_agreement(target, test)
    assert full["target_accuracy"] > 70, full
    assert_riskier("fidelity", full["fidelity"], majority, 60)
    assert full["fidelity"] > 90, full
    assert_riskier("stolen_accuracy", full["stolen_accuracy"], majority, 50)
    assert full["stolen_accuracy"] > full["target_accuracy"] - 5, full
    assert full["correct_fidelity"] >= full["target_accuracy"] - 5, full


def test_more_queries_steal_more(split, target) -> None:
    _, adversary, test = split
    few, full = _steal(target, adversary, test, 30), _steal(target, adversary, test, None)
    assert_riskier("fidelity", full["fidelity"], few["fidelity"], 20)
    assert_riskier("stolen_accuracy", full["stolen_accuracy"], few["stolen_accuracy"], 15)


def _ctx(fmnist, split, target, recipe, tmp_path) -> CellContext:
    member, adversary, test = split
    return cell_context(
        target=target,
        model_factory=_factory,
        recipe=recipe,
        dataset=fmnist,
        member=member,
        adversary=adversary,
        test=test,
        seed=0,
        cache_dir=tmp_path,
        defense_keys=recipe.defense_keys,
        input_shape=(1, 28, 28),
        clip_range=(0.0, 1.0),
    )


def test_layer2_adapter_fidelity_is_far_above_majority_agreement(fmnist_small, split, target, tmp_path) -> None:
    ctx = _ctx(fmnist_small, split, target, Recipe(CONFIG), tmp_path)
    attack = registry.get_attack("model_extraction")
    full = attack.run(ctx, attack.params(epochs=10))
    few = attack.run(ctx, attack.params(epochs=10, query_budget=30))
    majority = _majority_agreement(target, split[2])
    assert full["n_queries"] == len(split[1]) and few["n_queries"] == 30
    assert_riskier("fidelity", full["fidelity"], majority, 60)
    assert_riskier("fidelity", full["fidelity"], few["fidelity"], 20)
    assert_riskier("stolen_accuracy", full["stolen_accuracy"], few["stolen_accuracy"], 15)


def test_watermark_verifies_the_marked_model_and_clears_an_independent_one(split, target) -> None:
    member, _, test = split
    marked = seeded_init(_factory, 1)
    marked.load_state_dict(target.state_dict())
    defense = WatermarkNN(
        marked,
        torch.nn.CrossEntropyLoss(),
        torch.optim.Adam(marked.parameters(), lr=1e-3),
        member.loader(128, shuffle=True, seed=0),
        "cpu",
        num_classes=10,
        epochs=4,
        n_trigger=50,
        seed=5,
    )
    marked = defense.watermark()
    assert defense.verify(marked)
    marked_accuracy = defense.watermark_accuracy_
    independent = Recipe(CONFIG).train(_factory, split[1], seed=3)
    assert not defense.verify(independent)
    # random labels over 10 classes: an unmarked model answers the triggers at about chance (10%)
    assert marked_accuracy > 90 and defense.watermark_accuracy_ < 30, (marked_accuracy, defense.watermark_accuracy_)
    assert get_accuracy(marked, test.loader(1000), "cpu") > get_accuracy(target, test.loader(1000), "cpu") - 5


def test_layer2_watermark_check_tells_the_marked_target_from_its_trigger_set(fmnist_small, split, tmp_path) -> None:
    """The stealing cell regenerates the trigger set the stage embedded: the target answers it, chance does not."""
    info = registry.get_defense("watermark")
    recipe = Recipe(CONFIG, [info.make_stage(info.params(trigger_seed=9, n_trigger=50, epochs=4))])
    marked = recipe.train(_factory, split[0], seed=1)
    ctx = _ctx(fmnist_small, split, marked, recipe, tmp_path)
    attack = registry.get_attack("model_extraction")
    out = attack.run(ctx, attack.params(epochs=5, query_budget=500))
    assert out["watermark_accuracy_target"] > 90, out
    assert out["watermark_verified_stolen"] == float(out["watermark_accuracy_stolen"] > 90)
    # a model trained without the stage, on other rows, answers the regenerated triggers at about chance
    stage = recipe.stage("watermark")
    assert stage is not None
    triggers = watermark_trigger_set(stage.params, (1, 28, 28), 10)
    independent = Recipe(CONFIG).train(_factory, split[1], seed=3)
    assert get_accuracy(independent, triggers.loader(100), "cpu") < 30
