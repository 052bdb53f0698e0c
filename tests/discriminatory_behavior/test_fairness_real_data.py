"""Fairness on real data: compas metrics against fairlearn, census debiasing, the registered adapter."""

from __future__ import annotations

import dataclasses
import math
import tempfile

import numpy as np
import pytest
import torch
from fairlearn.metrics import MetricFrame, demographic_parity_difference, false_positive_rate, true_positive_rate

from amulet import registry
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.exceptions import NotApplicableError
from amulet.progress import SilentProgress
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.utils import TensorData, TrainConfig, get_accuracy, load_data

from .conftest import CONFIG, census_factory


@pytest.fixture(scope="module")
def compas(amulet_home):
    return load_data(str(amulet_home / "data"), "compas", exp_id=0)


def test_compas_metrics_equal_fairlearn(compas) -> None:
    from amulet.models import LinearNet

    train = TensorData.from_numpy(compas.x_train, compas.y_train, compas.z_train)
    test = TensorData.from_numpy(compas.x_test, compas.y_test, compas.z_test)
    model = Recipe(TrainConfig(epochs=5, batch_size=128)).train(
        lambda: LinearNet(compas.num_features, 2, [32]), train, seed=0
    )
    metrics = DiscriminatoryBehavior(model, test.loader(333, with_z=True), "cpu").evaluate_subgroup_metrics()
    with torch.no_grad():
        pred = model(test.x).argmax(1).numpy()
    y = test.y.numpy()
    assert 0.55 < (pred == y).mean() < 0.8
    for i, name in enumerate(compas.sensitive_columns):
        a = test.z[:, i].numpy()
        tpp = MetricFrame(metrics=true_positive_rate, y_true=y, y_pred=pred, sensitive_features=a).difference()
        fpp = MetricFrame(metrics=false_positive_rate, y_true=y, y_pred=pred, sensitive_features=a).difference()
        m = metrics[i]
        assert m["demographic_parity"] == pytest.approx(
            demographic_parity_difference(y, pred, sensitive_features=a), abs=1e-9
        ), name
        assert m["true_positive_parity"] == pytest.approx(tpp, abs=1e-9)
        assert m["false_positive_parity"] == pytest.approx(fpp, abs=1e-9)
        assert m["equalized_odds"] == pytest.approx(tpp + fpp, abs=1e-9)
        rates = [pred[a == g].mean() for g in (0, 1)]
        assert m["p_rule"] == pytest.approx(100 * min(rates) / max(rates), abs=1e-9)


def test_debiasing_lowers_demographic_parity_for_sex(census, census_split, census_baseline, census_debiased) -> None:
    test = census_split[1]
    sex = census.sensitive_columns.index("sex")
    loader = test.loader(4096, with_z=True)
    base = DiscriminatoryBehavior(census_baseline, loader, "cpu").evaluate_subgroup_metrics()[sex]
    fair = DiscriminatoryBehavior(census_debiased, loader, "cpu").evaluate_subgroup_metrics()[sex]
    acc_base = get_accuracy(census_baseline, test.loader(4096), "cpu")
    acc_fair = get_accuracy(census_debiased, test.loader(4096), "cpu")
    assert base["demographic_parity"] > 0.1  # the undebiased model does discriminate
    assert fair["demographic_parity"] <= 0.7 * base["demographic_parity"], (base, fair)
    assert acc_base - acc_fair < 5.0, (acc_base, acc_fair)
    assert fair["p_rule"] > base["p_rule"]


def _cell(census, census_split, model) -> CellContext:
    train, test = census_split
    return CellContext(
        target=model,
        model_factory=census_factory(census),
        recipe=Recipe(CONFIG),
        dataset=census,
        member=train,
        adversary=train,
        test=test.subset(np.arange(5000)),
        seed=0,
        device=torch.device("cpu"),
        cache_dir=tempfile.mkdtemp(prefix="amulet-f-"),
        progress=SilentProgress(),
        input_shape=(census.num_features,),
    )


def test_registered_adapter(census, census_split, census_baseline) -> None:
    info = registry.get_attack("subgroup_metrics")
    assert info.cls is DiscriminatoryBehavior and info.risk == "discriminatory_behavior"
    out = info.run(_cell(census, census_split, census_baseline), info.params())
    for metric in registry.get_risk("discriminatory_behavior").headline_metrics:
        assert math.isfinite(out[metric.key])
    assert out["demographic_parity"] == max(out["demographic_parity_race"], out["demographic_parity_sex"])
    assert out["equalized_odds"] == max(out["equalized_odds_race"], out["equalized_odds_sex"])
    assert out["p_rule"] == min(out["p_rule_race"], out["p_rule_sex"])


def test_adapter_not_applicable_without_attributes(census, census_split, census_baseline) -> None:
    ctx = _cell(census, census_split, census_baseline)
    bare = dataclasses.replace(ctx, test=TensorData(ctx.test.x, ctx.test.y))
    info = registry.get_attack("subgroup_metrics")
    with pytest.raises(NotApplicableError):
        info.run(bare, info.params())
    ten_classes = dataclasses.replace(ctx, dataset=dataclasses.replace(census, num_classes=10))
    with pytest.raises(NotApplicableError, match="binary task"):
        info.run(ten_classes, info.params())


@pytest.mark.slow
def test_layer1_debiasing_on_census(census, census_split, census_baseline) -> None:
    """The upstream-style class, starting from the trained baseline, also narrows the gap."""
    import copy

    from amulet.discriminatory_behavior.defenses import AdversarialDebiasing

    train, test = census_split
    model = copy.deepcopy(census_baseline)
    loader = train.loader(128, shuffle=True, seed=0, with_z=True)
    defense = AdversarialDebiasing(
        model,
        torch.nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        loader,
        test.loader(4096, with_z=True),
        2,
        2,
        [3.0, 3.0],
        "cpu",
        epochs=6,
        pretrain_adversary_epochs=2,
    )
    defense.train_fair()
    sex = census.sensitive_columns.index("sex")
    evaluate = DiscriminatoryBehavior
    base = evaluate(census_baseline, test.loader(4096, with_z=True), "cpu").evaluate_subgroup_metrics()[sex]
    fair = evaluate(model, test.loader(4096, with_z=True), "cpu").evaluate_subgroup_metrics()[sex]
    assert fair["demographic_parity"] <= 0.7 * base["demographic_parity"]
    auc = defense.adversary_report()
    assert len(auc) == 2 and all(np.isfinite(auc))
