"""Subgroup fairness metrics point the way the discriminatory-behaviour risk declares, on real census data.

The deliberately discriminatory target is trained on labels tied to sex: every woman loses the favourable
outcome (income > 50K) and half of the men, drawn at random, gain it. The reference target is trained on the
real labels. On held-out rows the first must show a larger demographic-parity gap and equalized-odds sum and a
lower p%-rule, for sex and in the worst case over attributes, at layer 1 and through the layer-2 adapter. A gap
computed as min - max, a p%-rule computed as max / min, or a worst case taken the wrong way breaks the margins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direction_testing import cell_context, riskier_in

from amulet import registry
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, get_accuracy

SEX = 1  # column of census.z: ("race", "sex")


assert_riskier = riskier_in("discriminatory_behavior")


@pytest.fixture(scope="module")
def setup(census):
    assert list(census.sensitive_columns)[SEX] == "sex"
    order = np.random.default_rng(0).permutation(len(census.x_train))[:3000]
    x, y, z = census.x_train[order], census.y_train[order], census.z_train[order]
    test = TensorData.from_numpy(census.x_test[:3000], census.y_test[:3000], census.z_test[:3000])
    # which sex value is the privileged one in these rows: the one with the higher rate of income > 50K
    privileged = int(y[z[:, SEX] == 1].mean() > y[z[:, SEX] == 0].mean())
    coin = np.random.default_rng(1).random(len(y)) < 0.5
    tied = np.where(z[:, SEX] == privileged, y | coin, 0).astype(np.int64)
    recipe = Recipe(TrainConfig(epochs=8, batch_size=128))

    def factory():
        return LinearNet(x.shape[1], 2, hidden_layer_sizes=[64, 32])

    models = {
        "fair_labels": recipe.train(factory, TensorData.from_numpy(x, y, z), seed=0),
        "tied_labels": recipe.train(factory, TensorData.from_numpy(x, tied, z), seed=0),
    }
    # the reference is a real classifier (majority rate about 76%); the tied one is not constant
    assert get_accuracy(models["fair_labels"], test.loader(1000), "cpu") > 78
    with torch.no_grad():
        assert 0.2 < float(models["tied_labels"](test.x).argmax(1).float().mean()) < 0.8
    return test, recipe, factory, models


def test_labels_tied_to_sex_give_a_more_discriminatory_model(setup) -> None:
    test, _, _, models = setup
    metrics = {
        name: DiscriminatoryBehavior(model, test.loader(1000, with_z=True), "cpu").evaluate_subgroup_metrics()[SEX]
        for name, model in models.items()
    }
    tied, fair = metrics["tied_labels"], metrics["fair_labels"]
    assert 0 <= fair["demographic_parity"] <= 1 and 0 <= fair["p_rule"] <= 100
    assert_riskier("demographic_parity", tied["demographic_parity"], fair["demographic_parity"], 0.25)
    assert_riskier("equalized_odds", tied["equalized_odds"], fair["equalized_odds"], 0.5)
    assert_riskier("p_rule", tied["p_rule"], fair["p_rule"], 10)


def test_layer2_adapter_orders_the_two_models_the_same_way(census, setup, tmp_path) -> None:
    test, recipe, factory, models = setup
    attack = registry.get_attack("subgroup_metrics")
    out = {}
    for name, model in models.items():
        ctx = cell_context(
            target=model,
            model_factory=factory,
            recipe=recipe,
            dataset=census,
            member=test,
            adversary=test,
            test=test,
            seed=0,
            cache_dir=tmp_path,
            input_shape=(test.x.shape[1],),
        )
        out[name] = attack.run(ctx, attack.params())
    tied, fair = out["tied_labels"], out["fair_labels"]
    for metric, margin in (("demographic_parity", 0.25), ("equalized_odds", 0.5), ("p_rule", 10)):
        assert_riskier(metric, tied[f"{metric}_sex"], fair[f"{metric}_sex"], margin)
        assert_riskier(metric, tied[metric], fair[metric], margin)
        # the headline is the worst case over the attributes: never better than the sex column alone
        assert_riskier(metric, tied[metric], tied[f"{metric}_sex"], -1e-12)
