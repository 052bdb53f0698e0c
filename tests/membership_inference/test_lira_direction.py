"""LiRA's headline scores point the way the membership-inference risk declares, on real census data.

A heavily overfitted target (250 training rows, 60 epochs, a wide MLP) must look clearly MORE susceptible than
a well-regularised one, for the online AND the offline score, at layer 1 and through the layer-2 adapter. The
margins are chosen so that any score moved to the wrong tail (e.g. ``-norm.logcdf`` instead of ``-norm.logsf``
for the offline test, or the IN and OUT Gaussians swapped in the online ratio) mirrors the ROC curve around the
diagonal and fails the test: chance is AUC 0.5 and TPR 0.01 at 1% FPR.
"""

from __future__ import annotations

import numpy as np
import pytest
from direction_testing import assert_riskier, cell_context
from torch import nn

from amulet import registry
from amulet.membership_inference.attacks import LiRA
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig

N_MEMBERS = 250
OVERFIT = TrainConfig(epochs=60, batch_size=32)
REGULARISED = TrainConfig(epochs=2, batch_size=64, weight_decay=1e-3)


@pytest.fixture(scope="module")
def pool(census) -> TensorData:
    """2 * N_MEMBERS census rows: the first half is the target's training set, the rest are outsiders."""
    order = np.random.default_rng(0).permutation(len(census.x_train))[: 2 * N_MEMBERS]
    return TensorData.from_numpy(census.x_train[order], census.y_train[order], census.z_train[order])


def _factory(n_features: int, hidden: list[int]):
    return lambda: LinearNet(n_features, 2, hidden_layer_sizes=hidden)


def _lira_metrics(pool: TensorData, config: TrainConfig, hidden: list[int]) -> dict[str, dict[str, float]]:
    in_data = np.arange(N_MEMBERS)
    recipe = Recipe(config)
    factory = _factory(pool.x.shape[1], hidden)
    target = recipe.train(factory, pool.subset(in_data), seed=11)
    attack = LiRA(
        target,
        in_data,
        "custom",
        "custom",
        pool,
        "census",
        pool.x.shape[1],
        2,
        config.batch_size,
        0.5,
        nn.CrossEntropyLoss(),
        8,
        config.epochs,
        "cpu",
        None,
        0,
        recipe=recipe,
        model_factory=factory,
        seed=0,
    )
    result = attack.attack()
    assert result["true_labels"].sum() == N_MEMBERS
    return {
        variant: compute_mi_metrics(result[f"lira_{variant}_preds"], result["true_labels"])
        for variant in ("online", "offline")
    }


@pytest.fixture(scope="module")
def overfit_metrics(pool) -> dict[str, dict[str, float]]:
    return _lira_metrics(pool, OVERFIT, [128, 64])


@pytest.fixture(scope="module")
def regularised_metrics(pool) -> dict[str, dict[str, float]]:
    return _lira_metrics(pool, REGULARISED, [16])


@pytest.mark.parametrize("variant", ["online", "offline"])
def test_overfit_target_scores_clearly_above_chance(overfit_metrics, variant) -> None:
    m = overfit_metrics[variant]
    # Chance: AUC 0.5, balanced accuracy 0.5, TPR 0.01 at 1% FPR. A wrong-tail score gives about 1 - AUC.
    assert_riskier("membership_inference", "auc", m["auc"], 0.5, 0.1)
    assert_riskier("membership_inference", "balanced_acc", m["balanced_acc"], 0.5, 0.05)
    assert_riskier("membership_inference", "tpr_at_fpr", m["tpr_at_fpr"], 0.01, 0.04)


@pytest.mark.parametrize("variant", ["online", "offline"])
def test_overfit_target_is_riskier_than_a_regularised_one(overfit_metrics, regularised_metrics, variant) -> None:
    vulnerable, safer = overfit_metrics[variant], regularised_metrics[variant]
    assert abs(safer["auc"] - 0.5) < 0.08, safer  # the regularised target leaks little
    assert_riskier("membership_inference", "auc", vulnerable["auc"], safer["auc"], 0.1)
    assert_riskier("membership_inference", "balanced_acc", vulnerable["balanced_acc"], safer["balanced_acc"], 0.05)
    assert_riskier("membership_inference", "tpr_at_fpr", vulnerable["tpr_at_fpr"], safer["tpr_at_fpr"], 0.03)


def test_layer2_adapter_reports_both_scores_in_the_risky_direction(census, pool, tmp_path) -> None:
    """The ``lira`` adapter on the overfitted target: headline = the chosen variant, both variants above chance."""
    members, outsiders = pool.subset(np.arange(N_MEMBERS)), pool.subset(np.arange(N_MEMBERS, 2 * N_MEMBERS))
    recipe = Recipe(OVERFIT)
    factory = _factory(pool.x.shape[1], [128, 64])
    ctx = cell_context(
        target=recipe.train(factory, members, seed=11),
        model_factory=factory,
        recipe=recipe,
        dataset=census,
        member=members,
        adversary=outsiders,
        test=outsiders,
        seed=3,
        cache_dir=tmp_path,
        input_shape=tuple(pool.x.shape[1:]),
    )
    attack = registry.get_attack("lira")
    output = attack.run(ctx, attack.params(num_shadow=8, scores="offline"))
    out = output.metrics  # a LiRA cell returns an AttackOutput (metrics, ROC curve, most exposed records)
    assert out["n_candidates"] == 2 * N_MEMBERS
    for metric in ("auc", "tpr_at_fpr", "balanced_acc"):
        assert out[metric] == out[f"{metric}_offline"]
    for variant in ("online", "offline"):
        assert_riskier("membership_inference", "auc", out[f"auc_{variant}"], 0.5, 0.1)
        assert_riskier("membership_inference", "tpr_at_fpr", out[f"tpr_at_fpr_{variant}"], 0.01, 0.04)
