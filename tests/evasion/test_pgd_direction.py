"""PGD's headline scores point the way the evasion risk declares, on real Fashion-MNIST images.

An undefended MLP is the deliberately vulnerable target. A larger budget must make it MORE susceptible (lower
robust accuracy, higher attack success rate), PGD must beat random noise of the same budget (so the gradient step
climbs the loss rather than descending it), and at epsilon 0 nothing changes. Images live in [0, 1], so the
attack's clip range is the data's range before and after any rescaling of tabular data.
"""

from __future__ import annotations

import numpy as np
import pytest
from direction_testing import cell_context, riskier_in

from amulet import registry
from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.metrics import attack_success_rate, robust_accuracy
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, get_accuracy

N_ATTACKED = 500


assert_riskier = riskier_in("evasion")


def _factory():
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[128, 64])


@pytest.fixture(scope="module")
def pgd_setup(fmnist_small):
    train = TensorData.from_numpy(fmnist_small.x_train[:3000], fmnist_small.y_train[:3000])
    test = TensorData.from_numpy(fmnist_small.x_test[:N_ATTACKED], fmnist_small.y_test[:N_ATTACKED])
    assert float(test.x.min()) >= 0.0 and float(test.x.max()) <= 1.0
    recipe = Recipe(TrainConfig(epochs=3, batch_size=128))
    target = recipe.train(_factory, train, seed=1)
    return target, recipe, train, test


def _pgd(target, test: TensorData, epsilon: float, iterations: int = 10) -> dict[str, float]:
    clean = test.loader(250)
    attack = EvasionPGD(
        target,
        clean,
        "cpu",
        250,
        epsilon=epsilon,
        iterations=iterations,
        step_size=2.5 * epsilon / max(iterations, 1),
        clip_min=0.0,
        clip_max=1.0,
        seed=0,
    )
    adversarial = attack.attack()
    x_adv = attack.adversarial_examples_
    assert float((x_adv - test.x).abs().max()) <= epsilon + 1e-6  # the budget holds
    return {
        "robust_accuracy": robust_accuracy(target, adversarial, "cpu"),
        "attack_success_rate": attack_success_rate(target, clean, adversarial, "cpu"),
        "clean_accuracy": get_accuracy(target, clean, "cpu"),
    }


def test_larger_budget_is_riskier_and_far_below_clean_accuracy(pgd_setup) -> None:
    target, _, _, test = pgd_setup
    small, large = _pgd(target, test, 0.02), _pgd(target, test, 0.1)
    clean = large["clean_accuracy"]
    assert clean > 70, clean  # a useful target: the numbers below describe a real classifier
    # epsilon 0.1 on [0, 1] images: robust accuracy collapses far below clean accuracy ...
    assert_riskier("robust_accuracy", large["robust_accuracy"], clean, 40)
    assert_riskier("attack_success_rate", large["attack_success_rate"], 0.0, 50)
    # ... and a five times smaller budget leaves clearly more of it.
    assert_riskier("robust_accuracy", large["robust_accuracy"], small["robust_accuracy"], 20)
    assert_riskier("attack_success_rate", large["attack_success_rate"], small["attack_success_rate"], 20)


def test_pgd_beats_random_noise_of_the_same_budget(pgd_setup) -> None:
    """Zero PGD steps = the uniform random start alone: the gradient steps must make things much worse."""
    target, _, _, test = pgd_setup
    noise, pgd = _pgd(target, test, 0.1, iterations=0), _pgd(target, test, 0.1, iterations=10)
    assert abs(noise["robust_accuracy"] - noise["clean_accuracy"]) < 10, noise  # noise barely hurts
    assert_riskier("robust_accuracy", pgd["robust_accuracy"], noise["robust_accuracy"], 40)
    assert_riskier("attack_success_rate", pgd["attack_success_rate"], noise["attack_success_rate"], 40)


def test_zero_budget_changes_nothing(pgd_setup) -> None:
    target, _, _, test = pgd_setup
    out = _pgd(target, test, 0.0)
    assert out["robust_accuracy"] == out["clean_accuracy"]
    assert out["attack_success_rate"] == 0.0


def test_layer2_adapter_orders_budgets_the_same_way(fmnist_small, pgd_setup, tmp_path) -> None:
    target, recipe, train, test = pgd_setup
    ctx = cell_context(
        target=target,
        model_factory=_factory,
        recipe=recipe,
        dataset=fmnist_small,
        member=train,
        adversary=train,
        test=test,
        seed=0,
        cache_dir=tmp_path,
        input_shape=(1, 28, 28),
        clip_range=(0.0, 1.0),
    )
    attack = registry.get_attack("pgd")
    small = attack.run(ctx, attack.params(epsilon=0.02, iterations=10))
    large = attack.run(ctx, attack.params(epsilon=0.1, iterations=10))
    assert small["clean_accuracy"] == large["clean_accuracy"] > 70
    assert_riskier("robust_accuracy", large["robust_accuracy"], large["clean_accuracy"], 40)
    assert_riskier("robust_accuracy", large["robust_accuracy"], small["robust_accuracy"], 20)
    assert_riskier("attack_success_rate", large["attack_success_rate"], small["attack_success_rate"], 20)
    # the two headline metrics agree: robust accuracy = clean accuracy * (1 - success rate) for this attack
    expected = large["clean_accuracy"] * (1 - large["attack_success_rate"] / 100)
    assert large["robust_accuracy"] == pytest.approx(expected, abs=1.0)
    assert np.isfinite(list(large.values())).all()
