"""LiRA on real census data: overfit vs generalised targets, online vs offline, shadow caching, adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.membership_inference.attacks import LiRA, logit_scaled_confidence, make_keep_matrix
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig


def _lira(target, pool, in_data, recipe, factory, **kwargs) -> LiRA:
    defaults = dict(num_shadow=8, pkeep=0.5, models_dir=None)
    defaults.update(kwargs)
    return LiRA(
        target,
        in_data,
        "linearnet",
        "m1",
        pool,
        "census",
        pool.x.shape[1],
        2,
        recipe.config.batch_size,
        defaults["pkeep"],
        nn.CrossEntropyLoss(),
        defaults["num_shadow"],
        recipe.config.epochs,
        "cpu",
        defaults["models_dir"],
        0,
        recipe=recipe,
        model_factory=factory,
        seed=defaults.get("seed", 0),
    )


def test_logit_scaled_confidence_matches_definition(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 4, generator=g)
    labels = torch.randint(0, 4, (5,), generator=g)
    p = torch.softmax(logits.double(), -1)
    py = p.gather(-1, labels.view(1, -1, 1).expand(3, 5, 1)).squeeze(-1)
    expected = torch.log(py) - torch.log(1 - py)
    torch.testing.assert_close(logit_scaled_confidence(logits, labels), expected)


def test_keep_matrix_has_exact_in_counts() -> None:
    keep = make_keep_matrix(8, 1000, 0.5, seed=3)
    assert (keep.sum(0) == 4).all()
    assert 400 < keep.sum(1).min() <= keep.sum(1).max() < 600


def test_overfit_target_is_vulnerable_and_online_beats_offline(census_rows) -> None:
    train, _ = census_rows
    pool = train.subset(np.arange(600))
    in_data = np.arange(300)
    recipe = Recipe(TrainConfig(epochs=40, batch_size=64))

    def factory() -> nn.Module:
        return LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[128, 64])

    target = recipe.train(factory, pool.subset(in_data), seed=11)
    lira = _lira(target, pool, in_data, recipe, factory)
    result = lira.attack()
    assert lira.trainer_mode_ == "batched"
    assert result["true_labels"].sum() == 300 and len(result["true_labels"]) == 600
    online = compute_mi_metrics(result["lira_online_preds"], result["true_labels"])
    offline = compute_mi_metrics(result["lira_offline_preds"], result["true_labels"])
    assert online["auc"] > 0.6, online
    assert online["tpr_at_fpr"] > 0.01, online
    assert online["auc"] > offline["auc"], (online, offline)


def test_generalised_target_is_close_to_chance(census_rows) -> None:
    train, _ = census_rows
    pool = train.subset(np.arange(6000))
    in_data = np.arange(3000)
    recipe = Recipe(TrainConfig(epochs=2, batch_size=256))

    def factory() -> nn.Module:
        return LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[32])

    target = recipe.train(factory, pool.subset(in_data), seed=11)
    result = _lira(target, pool, in_data, recipe, factory).attack()
    online = compute_mi_metrics(result["lira_online_preds"], result["true_labels"])
    assert abs(online["auc"] - 0.5) < 0.05, online


def test_shadow_cache_is_keyed_by_everything(census_rows, tmp_path) -> None:
    train, _ = census_rows
    pool = train.subset(np.arange(200))
    in_data = np.arange(100)
    recipe = Recipe(TrainConfig(epochs=1, batch_size=64))

    def small() -> nn.Module:
        return LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[16])

    def wider() -> nn.Module:
        return LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[17])

    target = recipe.train(small, pool.subset(in_data), seed=1)
    base = dict(recipe=recipe, factory=small, pool=pool, num_shadow=4, pkeep=0.5)

    def run(**change) -> LiRA:
        args = base | change
        lira = _lira(
            target,
            args["pool"],
            in_data,
            args["recipe"],
            args["factory"],
            num_shadow=args["num_shadow"],
            pkeep=args["pkeep"],
            models_dir=tmp_path,
        )
        lira.attack()
        return lira

    first = run()
    assert first.n_cached_ == 0
    again = run()
    assert again.n_cached_ == 4 and again.trainer_mode_ == "cached"
    for a, b in zip(first.shadow_models_, again.shadow_models_):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k])
    other_rows = TensorData(pool.x.clone(), pool.y.clone())
    other_rows.x[:, 0] += 1.0
    changes = {
        "architecture": dict(factory=wider),
        "epochs": dict(recipe=Recipe(TrainConfig(epochs=2, batch_size=64))),
        "recipe": dict(recipe=Recipe(TrainConfig(epochs=1, batch_size=64, optimizer="sgd"))),
        "pkeep": dict(pkeep=0.25),
        "data": dict(pool=other_rows),
    }
    for what, change in changes.items():
        assert run(**change).n_cached_ == 0, what


def test_bad_pkeep_names_the_parameter(census_rows) -> None:
    train, _ = census_rows
    pool = train.subset(np.arange(20))
    model = LinearNet(pool.x.shape[1], 2)
    recipe = Recipe(TrainConfig(epochs=1))
    with pytest.raises(InvalidParameterError, match="'pkeep'"):
        _lira(model, pool, np.arange(10), recipe, None, pkeep=1.5).attack()
    with pytest.raises(InvalidParameterError, match="'pkeep'"):
        _lira(model, pool, np.arange(10), recipe, None, pkeep=0.05).attack()
