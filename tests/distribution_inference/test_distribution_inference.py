"""Distribution inference on real census data (property: sex)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from amulet import registry
from amulet.distribution_inference.attacks import SuriEvans2022, WhiteBoxPIM, prepare_distribution_splits
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.exceptions import InvalidParameterError, NotApplicableError, NotRunError
from amulet.models import LinearNet
from amulet.utils import TensorData

SEX = 1  # column of z (["race", "sex"])


def _attack(census, cls, r1: float, r2: float, **kwargs):
    options = dict(train_subsample=800, test_subsample=400, num_victim_models=8, seed=1)
    options.update(kwargs)
    n_models = options.pop("num_models", 16)
    return cls(
        census.x_train, census.y_train, census.z_train, census.x_test, census.y_test, census.z_test,
        list(census.sensitive_columns), "sex", r1, r2, "linearnet", "m1", census.num_features, 2, n_models, 10, 128,
        "cpu", None, "census",
        model_factory=lambda: LinearNet(census.num_features, 2, hidden_layer_sizes=[32, 16]), **options,
    )  # fmt: skip


def test_metric_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 50)
    scores = np.clip(rng.normal(0.5, 0.2, 50) + 0.1 * truth, 0, 1)
    m = evaluate_distinguishing_accuracy(scores, truth)
    assert m["auc_score"] == pytest.approx(roc_auc_score(truth, scores))
    assert m["distinguishing_accuracy"] == pytest.approx(np.mean((scores >= 0.5) == truth))
    with pytest.raises(InvalidParameterError, match="'threshold'"):
        evaluate_distinguishing_accuracy(scores, truth, threshold=2.0)
    with pytest.raises(InvalidParameterError, match="'ground_truth'"):
        evaluate_distinguishing_accuracy(scores, truth[:-1])


def test_splits_have_the_requested_ratios(census) -> None:
    splits = prepare_distribution_splits(
        census.x_train, census.y_train, census.z_train, census.x_test, census.y_test, census.z_test,
        list(census.sensitive_columns), "sex", 0.2, 0.8, 800, 400, seed=3,
    )  # fmt: skip
    for name, ratio in [("vic_trainloader_1", 0.2), ("adv_trainloader_2", 0.8), ("test_loader_1", 0.2)]:
        z = TensorData.from_dataset(getattr(splits, name).dataset).z
        assert float((z[:, SEX] == 1).double().mean()) == pytest.approx(ratio, abs=0.005), name
    assert len(splits.test_loader_2.dataset) == 400
    vic = TensorData.from_dataset(splits.vic_trainloader_1.dataset).x
    adv = TensorData.from_dataset(splits.adv_trainloader_1.dataset).x
    # victim and adversary pools come from disjoint halves (rows are compared as whole feature vectors)
    vic_rows = {tuple(r) for r in vic[:500].tolist()}
    overlap = sum(tuple(r) in vic_rows for r in adv.tolist())
    assert overlap < 0.2 * len(adv)  # duplicates in census exist, but the halves are disjoint by index
    with pytest.raises(InvalidParameterError, match="'filter_column'"):
        prepare_distribution_splits(
            census.x_train,
            census.y_train,
            census.z_train,
            census.x_test,
            census.y_test,
            census.z_test,
            list(census.sensitive_columns),
            "age",
            0.2,
            0.8,
        )


def test_kl_test_distinguishes_0_2_from_0_8_and_not_0_5_from_0_5(census) -> None:
    far = _attack(census, SuriEvans2022, 0.2, 0.8)
    with pytest.raises(NotRunError):
        far.attack()
    far.prepare_model_populations()
    result = far.attack()
    assert result["predictions"].shape == (16,) and set(result["ground_truth"]) == {0.0, 1.0}
    m_far = evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])
    same = _attack(census, SuriEvans2022, 0.5, 0.5)
    same.prepare_model_populations()
    result = same.attack()
    m_same = evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])
    print(f"KL test: 0.2 vs 0.8 {m_far}, 0.5 vs 0.5 {m_same}")
    assert m_far["distinguishing_accuracy"] >= 0.65 and m_far["auc_score"] >= 0.7, m_far
    assert abs(m_same["distinguishing_accuracy"] - 0.5) <= 0.25, m_same


def test_whitebox_pim_scores_victims(census) -> None:
    attack = _attack(
        census, WhiteBoxPIM, 0.2, 0.8, num_models=6, num_victim_models=3, meta_epochs=20, train_subsample=300
    )
    attack.prepare_model_populations()
    result = attack.attack()
    assert result["predictions"].shape == (6,)
    assert ((result["predictions"] >= 0) & (result["predictions"] <= 1)).all()
    conv_only = [nn.Sequential(nn.Conv1d(1, 2, 3))]
    with pytest.raises(NotApplicableError):
        attack.attack(
            models_adv_1=conv_only, models_adv_2=conv_only, models_target_1=conv_only, models_target_2=conv_only
        )


def test_registered_adapters_run_on_a_census_cell(census, tmp_path) -> None:
    from amulet.progress import SilentProgress
    from amulet.recipes import Recipe
    from amulet.registry import CellContext
    from amulet.utils import TrainConfig

    order = np.random.default_rng(0).permutation(len(census.x_train))
    rows = TensorData.from_numpy(census.x_train[order], census.y_train[order], census.z_train[order])
    recipe = Recipe(TrainConfig(epochs=3, batch_size=128))

    def factory() -> nn.Module:
        return LinearNet(census.num_features, 2, hidden_layer_sizes=[16])

    member = rows.subset(np.arange(2000))
    ctx = CellContext(
        target=recipe.train(factory, member, seed=0), model_factory=factory, recipe=recipe, dataset=census,
        member=member, adversary=rows.subset(np.arange(2000, 4000)),
        test=TensorData.from_numpy(census.x_test[:3000], census.y_test[:3000], census.z_test[:3000]), seed=5,
        device=torch.device("cpu"), cache_dir=tmp_path, progress=SilentProgress(),
    )  # fmt: skip
    headline = {m.key for m in registry.get_risk("distribution_inference").headline_metrics}
    for key in ("suri_evans_2022", "whitebox_pim"):
        info = registry.get_attack(key)
        params = info.params(num_models=4, num_victim_models=2, train_subsample=300, test_subsample=200)
        out = info.run(ctx, params)
        assert headline <= set(out) and 0 <= out["distinguishing_accuracy"] <= 1, key
    with pytest.raises(NotApplicableError):
        registry.get_attack("suri_evans_2022").run(ctx, registry.get_attack("suri_evans_2022").params(property="age"))
    lira = registry.get_attack("lira")
    out = lira.run(ctx, lira.params(num_shadow=4, max_members=300))
    assert {m.key for m in registry.get_risk("membership_inference").headline_metrics} <= set(out)
    assert out["n_candidates"] == 600.0
