"""BadNets' headline scores point the way the poisoning risk declares, on real Fashion-MNIST and census data.

The deliberately vulnerable target is trained on BadNets-poisoned rows; the safe one on the same rows unpoisoned.
Triggered test inputs must be sent to the trigger label by the poisoned model (high attack success rate) and only
at the base rate by the clean one. Mislabelled poison, a trigger missing from the test rows or a success rate
counted on the wrong rows each break the gap.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direction_testing import cell_context, riskier_in

from amulet import registry
from amulet.models import LinearNet
from amulet.poisoning.attacks import BadNets
from amulet.poisoning.metrics import backdoor_success_rate
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, get_accuracy

assert_riskier = riskier_in("poisoning")


def _image_factory():
    return LinearNet(28 * 28, 10, hidden_layer_sizes=[128, 64])


@pytest.fixture(scope="module")
def images(fmnist_small):
    train = TensorData.from_numpy(fmnist_small.x_train[:3000], fmnist_small.y_train[:3000])
    test = TensorData.from_numpy(fmnist_small.x_test[:1000], fmnist_small.y_test[:1000])
    return train, test


def _poisoned_vs_clean(train, test, factory, recipe, attack: BadNets) -> dict[str, float]:
    clean = recipe.train(factory, train, seed=1)
    poisoned = recipe.train(factory, TensorData(*attack.poison_train(train).tensors), seed=1)
    triggered = TensorData(*attack.poison_test(test).tensors)
    assert (triggered.y == attack.trigger_label).all() and len(triggered) == int((test.y != attack.trigger_label).sum())
    loader = triggered.loader(1000)
    return {
        "asr_poisoned": backdoor_success_rate(poisoned, loader, "cpu"),
        "asr_clean": backdoor_success_rate(clean, loader, "cpu"),
        "acc_poisoned": get_accuracy(poisoned, test.loader(1000), "cpu"),
        "acc_clean": get_accuracy(clean, test.loader(1000), "cpu"),
    }


def test_image_backdoor_succeeds_on_the_poisoned_model_only(images) -> None:
    train, test = images
    # Fashion-MNIST corners are black: a white trigger (1.0) is visible.
    attack = BadNets(0, 0.1, 3, "image", trigger_value=1.0)
    out = _poisoned_vs_clean(train, test, _image_factory, Recipe(TrainConfig(epochs=3, batch_size=128)), attack)
    assert out["asr_clean"] < 10, out  # base rate: triggered non-class-0 images the clean model calls class 0
    assert_riskier("attack_success_rate", out["asr_poisoned"], 80.0, 0)
    assert_riskier("attack_success_rate", out["asr_poisoned"], out["asr_clean"], 60)
    assert out["acc_poisoned"] > out["acc_clean"] - 5, out  # the backdoor is stealthy: clean accuracy is kept


def test_tabular_backdoor_succeeds_on_the_poisoned_model_only(census) -> None:
    order = np.random.default_rng(0).permutation(len(census.x_train))[:3000]
    train = TensorData.from_numpy(census.x_train[order], census.y_train[order])
    test = TensorData.from_numpy(census.x_test[:2000], census.y_test[:2000])

    def factory():
        return LinearNet(census.x_train.shape[1], 2, hidden_layer_sizes=[64, 32])

    # Trigger label 1 (income > 50K, the minority class): zeroing the last fifth of the features (which holds
    # age, education, capital gain and hours) never makes a clean model predict it.
    attack = BadNets(1, 0.1, 3, "tabular")
    out = _poisoned_vs_clean(train, test, factory, Recipe(TrainConfig(epochs=8, batch_size=128)), attack)
    assert out["asr_clean"] < 10, out
    assert_riskier("attack_success_rate", out["asr_poisoned"], 80.0, 0)
    assert_riskier("attack_success_rate", out["asr_poisoned"], out["asr_clean"], 60)


def test_layer2_adapter_reports_a_high_success_rate(fmnist_small, images, tmp_path) -> None:
    """``registry.get_attack("badnets").run`` poisons the member rows, trains with the recipe, reports the ASR."""
    train, test = images
    recipe = Recipe(TrainConfig(epochs=3, batch_size=128))
    clean = recipe.train(_image_factory, train, seed=1)
    ctx = cell_context(
        target=clean,
        model_factory=_image_factory,
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
    attack = registry.get_attack("badnets")
    out = attack.run(ctx, attack.params(trigger_label=0, portion=0.1))
    assert out["n_poisoned"] == min(int(0.1 * len(train)), int((train.y != 0).sum()))
    # the adapter's automatic trigger value on these black corners is 1.0: the clean target's base rate with it
    triggered = TensorData(*BadNets(0, 0.1, 0, "image", trigger_value=1.0).poison_test(test).tensors)
    base_rate = backdoor_success_rate(clean, triggered.loader(1000), "cpu")
    assert base_rate < 10
    assert_riskier("attack_success_rate", out["attack_success_rate"], base_rate, 60)
    assert out["clean_accuracy"] > get_accuracy(clean, test.loader(1000), "cpu") - 5


def test_layer2_default_tabular_trigger_is_not_one_the_clean_model_already_obeys(census, tmp_path) -> None:
    """With default parameters on census, the unpoisoned model must not already send triggered rows to label 0.

    Zeroing census' numeric block makes any model predict "<=50K" (label 0, the default trigger label), so a
    fixed trigger value of 0 reported a 100 % backdoor on every row, poisoned or not. The adapter now picks the
    trigger value on the adversary's rows and reports the unpoisoned model's rate next to the headline: that rate
    stays at the clean model's own error rate on those rows.
    """
    rng = np.random.default_rng(1)
    order = rng.permutation(len(census.x_train))[:4000]
    member = TensorData.from_numpy(census.x_train[order[:2000]], census.y_train[order[:2000]])
    adversary = TensorData.from_numpy(census.x_train[order[2000:]], census.y_train[order[2000:]])
    test = TensorData.from_numpy(census.x_test[:2000], census.y_test[:2000])

    def factory():
        return LinearNet(census.x_train.shape[1], 2, hidden_layer_sizes=[64, 32])

    recipe = Recipe(TrainConfig(epochs=8, batch_size=128))
    target = recipe.train(factory, member, seed=1)
    ctx = cell_context(
        target=target,
        model_factory=factory,
        recipe=recipe,
        dataset=census,
        member=member,
        adversary=adversary,
        test=test,
        seed=0,
        cache_dir=tmp_path,
        input_shape=(census.x_train.shape[1],),
        clip_range=(0.0, 1.0),
    )
    attack = registry.get_attack("badnets")
    out = attack.run(ctx, attack.params())
    # The floor: the share of the ">50K" test rows the clean model sends to label 0 with no trigger at all
    # (about 43 % for this small model on the upstream census encoding, where the last fifth of the features is
    # the native-country block). The chosen trigger must add next to nothing to it, far from the 100 % of a
    # trigger the clean model obeys.
    positives = test.x[test.y != 0]
    with torch.no_grad():
        floor = 100 * float((target.eval()(positives).argmax(1) == 0).float().mean())
    assert out["unpoisoned_trigger_rate"] <= floor + 5, (out, floor)
    assert out["unpoisoned_trigger_rate"] < 60, out
    assert_riskier("attack_success_rate", out["attack_success_rate"], out["unpoisoned_trigger_rate"], 50)
