"""Attribute inference's headline scores point the way the risk declares, on real census data.

The deliberately vulnerable target is trained to predict ``sex`` itself (a sensitive attribute that is not among
the inputs), so its logits encode it strongly; the less vulnerable one is trained on the real income label, which
is only partly correlated with sex. The attack must infer sex from the vulnerable target's outputs far above
chance and above the majority guess, and clearly better than from the income model. A decision threshold or a
class probability taken the wrong way round breaks these margins.
"""

from __future__ import annotations

import numpy as np
import pytest
from direction_testing import cell_context, riskier_in

from amulet import registry
from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig

SEX = 1  # column of census.z: ("race", "sex")
N = 2000


assert_riskier = riskier_in("attribute_inference")


@pytest.fixture(scope="module")
def setup(census):
    assert list(census.sensitive_columns)[SEX] == "sex"
    order = np.random.default_rng(0).permutation(len(census.x_train))[: 2 * N]
    x, y, z = census.x_train[order], census.y_train[order], census.z_train[order]
    member = TensorData.from_numpy(x[:N], y[:N], z[:N])
    adversary = TensorData.from_numpy(x[N:], y[N:], z[N:])
    recipe = Recipe(TrainConfig(epochs=8, batch_size=128))

    def factory():
        return LinearNet(x.shape[1], 2, hidden_layer_sizes=[64, 32])

    income = recipe.train(factory, member, seed=0)
    leaky = recipe.train(factory, TensorData(member.x, member.z[:, SEX].long(), member.z), seed=0)
    return member, adversary, recipe, factory, {"income": income, "leaky": leaky}


def _attack(model, member: TensorData, adversary: TensorData) -> tuple[dict[str, float], float]:
    attack = DudduCIKM2022(model, adversary.x, member.x, adversary.z.numpy(), 1024, "cpu", max_iter=100, random_state=0)
    result = attack.attack()
    scores = evaluate_attribute_inference(member.z.numpy(), result)[SEX]
    plain_accuracy = float((result[SEX]["predictions"] == member.z[:, SEX].numpy().astype(bool)).mean())
    return {"balanced_accuracy": scores["attack_accuracy"], "auc": scores["auc_score"]}, plain_accuracy


@pytest.fixture(scope="module")
def layer1(setup) -> dict[str, tuple[dict[str, float], float]]:
    member, adversary, _, _, models = setup
    return {name: _attack(model, member, adversary) for name, model in models.items()}


def test_sex_is_inferred_far_above_chance_from_the_leaky_target(setup, layer1) -> None:
    member = setup[0]
    scores, plain_accuracy = layer1["leaky"]
    assert_riskier("balanced_accuracy", scores["balanced_accuracy"], 0.5, 0.25)
    assert_riskier("auc", scores["auc"], 0.5, 0.3)
    majority = float(max(member.z[:, SEX].float().mean(), 1 - member.z[:, SEX].float().mean()))
    assert plain_accuracy > majority + 0.1, (plain_accuracy, majority)


def test_leaky_target_is_riskier_than_the_income_model(layer1) -> None:
    (leaky, _), (income, _) = layer1["leaky"], layer1["income"]
    assert_riskier("balanced_accuracy", leaky["balanced_accuracy"], income["balanced_accuracy"], 0.1)
    assert_riskier("auc", leaky["auc"], income["auc"], 0.15)


def test_layer2_adapter_orders_the_two_targets_the_same_way(census, setup, tmp_path) -> None:
    member, adversary, recipe, factory, models = setup
    attack = registry.get_attack("duddu_cikm_2022")
    out = {}
    for name, model in models.items():
        ctx = cell_context(
            target=model,
            model_factory=factory,
            recipe=recipe,
            dataset=census,
            member=member,
            adversary=adversary,
            test=adversary,
            seed=0,
            cache_dir=tmp_path,
            input_shape=(member.x.shape[1],),
        )
        out[name] = attack.run(ctx, attack.params(max_iter=100))
    leaky, income = out["leaky"], out["income"]
    assert leaky["balanced_accuracy"] == max(leaky["balanced_accuracy_sex"], leaky["balanced_accuracy_race"])
    assert_riskier("balanced_accuracy", leaky["balanced_accuracy_sex"], 0.5, 0.25)
    assert_riskier("balanced_accuracy", leaky["balanced_accuracy"], income["balanced_accuracy"], 0.1)
    assert_riskier("auc", leaky["auc"], income["auc"], 0.15)
