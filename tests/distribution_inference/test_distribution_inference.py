"""Distribution inference on real census data (property: sex)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from amulet import registry
from amulet.distribution_inference.attacks import SuriEvans2022, WhiteBoxPIM
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.exceptions import InvalidParameterError, NotApplicableError, NotRunError
from amulet.models import LinearNet
from amulet.utils import TensorData


def _attack(census, cls, r1: float, r2: float, **kwargs):
    options = dict(train_subsample=250, test_subsample=100, num_target_models=8, seed=1)
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


def _scores(attack) -> dict[str, float]:
    result = attack.attack()
    return evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])


def test_kl_test_distinguishes_0_2_from_0_8_and_accuracy_agrees_with_auc(census) -> None:
    far = _attack(census, SuriEvans2022, 0.2, 0.8, num_target_models=16, seed=2)
    with pytest.raises(NotRunError):
        far.attack()
    far.prepare_model_populations()
    result = far.attack()
    assert result["predictions"].shape == (32,) and set(result["ground_truth"]) == {0.0, 1.0}
    m = evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])
    assert m["distinguishing_accuracy"] >= 0.7 and m["auc_score"] >= 0.75, m
    assert abs(m["distinguishing_accuracy"] - m["auc_score"]) <= 0.25, m
    # the decision is "raw score >= the adversary's threshold", and that threshold comes from the adversary's
    # own models: other target models (here: only the distribution-2 ones, twice) do not move it
    threshold = float(result["threshold"])
    assert ((result["predictions"] >= 0.5) == (result["raw_scores"] >= threshold)).all()
    assert 0.5 <= float(result["adversary_accuracy"]) <= 1
    again = far.attack(models_target_1=far.models_target_2, models_target_2=far.models_target_2)
    assert float(again["threshold"]) == threshold


def test_kl_test_null_setting_stays_near_chance(census) -> None:
    same = _attack(census, SuriEvans2022, 0.5, 0.5, num_target_models=16, seed=1)
    same.prepare_model_populations()
    m = _scores(same)
    assert abs(m["distinguishing_accuracy"] - 0.5) <= 0.2 and abs(m["auc_score"] - 0.5) <= 0.2, m


def test_whitebox_pim_scores_target_models(census) -> None:
    attack = _attack(
        census, WhiteBoxPIM, 0.2, 0.8, num_models=6, num_target_models=3, meta_epochs=20, train_subsample=80
    )
    attack.prepare_model_populations()
    result = attack.attack()
    assert result["predictions"].shape == (6,)
    assert ((result["predictions"] >= 0) & (result["predictions"] <= 1)).all()
    # out-of-fold scores of the adversary's 12 models choose the threshold; 5 fold meta-classifiers
    assert np.isfinite(result["adversary_scores"]).all() and len(attack.meta_classifiers_) == 5
    assert ((result["predictions"] >= 0.5) == (result["raw_scores"] >= float(result["threshold"]))).all()
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
        assert isinstance(out, dict), key
        assert headline <= set(out) and 0 <= out["distinguishing_accuracy"] <= 1, key
        assert 0 <= out["adversary_accuracy"] <= 1, key
    with pytest.raises(NotApplicableError):
        registry.get_attack("suri_evans_2022").run(ctx, registry.get_attack("suri_evans_2022").params(property="age"))
