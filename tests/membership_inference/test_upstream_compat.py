"""Upstream Amulet 0.6.0 behaviours of the membership inference layer 1, on real census rows.

LiRA.prepare_shadow_models, DPSGD.privacy_engine, compute_mi_metrics' threshold_score, the defenses'
``__all__`` and upstream's argument names.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import amulet.membership_inference.defenses as defenses
from amulet.membership_inference.attacks import LiRA
from amulet.membership_inference.defenses import DPSGD
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TrainConfig


def _upstream_lira(target, pool, in_data, models_dir, **kwargs) -> LiRA:
    """LiRA called with upstream's sixteen positional arguments (a Dataset, upstream's names)."""
    return LiRA(
        target,
        in_data,
        "linearnet",
        "m1",
        TensorDataset(pool.x, pool.y),
        "census",
        pool.x.shape[1],
        2,
        64,
        0.5,
        nn.CrossEntropyLoss(),
        4,
        1,
        "cpu",
        models_dir,
        **({"experiment_id": 0} | kwargs),
    )


@pytest.fixture(scope="module")
def lira_setup(census_rows):
    train, _ = census_rows
    pool = train.subset(np.arange(200))
    in_data = np.arange(100)
    target = Recipe(TrainConfig(epochs=2, batch_size=64)).train(
        lambda: LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[16]), pool.subset(in_data), seed=1
    )
    return pool, in_data, target


def test_lira_prepare_shadow_models_then_attack_reuses_them(lira_setup, tmp_path) -> None:
    pool, in_data, target = lira_setup
    lira = _upstream_lira(target, pool, in_data, tmp_path)
    shadows = lira.prepare_shadow_models()
    assert len(shadows) == 4 and lira.get_shadow_models() is shadows
    assert lira.n_cached_ == 0 and (lira.keep_.sum(0) == 2).all()
    weights = [{k: v.clone() for k, v in s.state_dict().items()} for s in shadows]

    result = lira.attack()
    # attack() scored with the prepared shadows: the same objects, untouched, no second training
    assert lira.shadow_models_ is shadows
    for shadow, before in zip(lira.shadow_models_, weights):
        assert all(torch.equal(v, before[k]) for k, v in shadow.state_dict().items())
    assert set(result) == {"lira_online_preds", "lira_offline_preds", "true_labels"}
    assert result["true_labels"].sum() == 100 and len(result["lira_online_preds"]) == 200

    # attack() alone (upstream: it calls prepare_shadow_models itself) gives the same scores
    alone = _upstream_lira(target, pool, in_data, None).attack()
    np.testing.assert_allclose(alone["lira_online_preds"], result["lira_online_preds"], rtol=1e-6, atol=1e-9)


def test_lira_attack_retrains_shadows_prepared_with_other_settings(lira_setup) -> None:
    pool, in_data, target = lira_setup
    lira = _upstream_lira(target, pool, in_data, None)
    first = lira.prepare_shadow_models()
    lira.num_shadow = 6
    lira.attack()
    assert len(lira.shadow_models_) == 6 and lira.shadow_models_ is not first and lira.keep_.shape == (6, 200)


def test_lira_takes_upstreams_argument_names(lira_setup) -> None:
    pool, in_data, target = lira_setup
    params = list(inspect.signature(LiRA.__init__).parameters)[1:17]
    assert params == [
        "target_model", "in_data", "shadow_architecture", "shadow_capacity", "train_set", "dataset",
        "num_features", "num_classes", "batch_size", "pkeep", "criterion", "num_shadow", "epochs", "device",
        "models_dir", "experiment_id",
    ]  # fmt: skip
    lira = _upstream_lira(target, pool, in_data, None, experiment_id=7)
    assert lira.experiment_id == 7 and lira.exp_id == 7  # upstream's base class stores it as exp_id
    lira.exp_id = 3  # upstream code may set it under that name too
    assert lira.experiment_id == 3


def test_dpsgd_privacy_engine_accountant_reports_our_epsilon(census_rows) -> None:
    from opacus import PrivacyEngine
    from opacus.accountants import PRVAccountant, RDPAccountant

    train, _ = census_rows
    data = train.subset(np.arange(320))
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=64)
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False)
    # upstream's positional call: model, criterion, optimizer, loader, device, delta, C, sigma, secure_rng, epochs
    dp = DPSGD(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), loader, "cpu", 1e-5,
               1.0, 1.1, False, 2)  # fmt: skip
    assert isinstance(dp.privacy_engine, PrivacyEngine)  # exists before training, as upstream
    assert isinstance(dp.privacy_engine.accountant, PRVAccountant)  # Opacus' default, as upstream
    private = dp.train_private()
    assert dp.privacy_engine.accountant.history == [(1.1, 64 / 320, 10)]
    assert dp.privacy_engine.accountant.get_epsilon(1e-5) == dp.epsilon_ == private.privacy_epsilon_
    assert 0 < dp.epsilon_ < float("inf")
    # the returned model stays a plain module (no Opacus hooks): a deliberate divergence from upstream
    assert type(private) is LinearNet and not any(hasattr(p, "grad_sample") for p in private.parameters())

    # the engine's accountant: the same history through RDP gives the epsilon the RDP accountant reports
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False)
    rdp = DPSGD(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), loader, "cpu", 1e-5,
                1.0, 1.1, False, 2, accountant="rdp")  # fmt: skip
    rdp.train_private()
    assert isinstance(rdp.privacy_engine.accountant, RDPAccountant)
    assert rdp.privacy_engine.accountant.get_epsilon(1e-5) == rdp.epsilon_
    assert rdp.epsilon_ > dp.epsilon_  # RDP's bound is looser than PRV's for the same training


def test_dpsgd_training_again_composes_in_the_engine(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(128))
    model = nn.Linear(data.x.shape[1], 2)
    dp = DPSGD(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), data.loader(32), "cpu",
               1e-5, 1.0, 1.0, epochs=1)  # fmt: skip
    dp.train_private()
    once = dp.epsilon_
    dp.train_private()
    assert dp.steps_ == 4 and dp.privacy_engine.accountant.history == [(1.0, 0.25, 8)]
    assert dp.epsilon_ == dp.privacy_engine.accountant.get_epsilon(1e-5) > once


def test_threshold_score_is_the_best_balanced_accuracy_threshold(seed: int) -> None:
    """As upstream: the threshold of sklearn's ROC curve with the best balanced accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.random(3000) < 0.5
    scores = np.round(rng.normal(size=3000) + 0.8 * labels, 2)  # ties included
    metrics = compute_mi_metrics(scores, labels)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = np.argmax(1 - (fpr + (1 - tpr)) / 2)
    assert metrics["threshold_score"] == thresholds[best]
    called = scores >= metrics["threshold_score"]
    balanced = (called[labels].mean() + (~called[~labels]).mean()) / 2
    assert balanced == pytest.approx(metrics["balanced_acc"], abs=1e-12)
    # the threshold reaching tpr_at_fpr is a separate key now (it was threshold_score before)
    assert metrics["threshold_at_fpr"] > metrics["threshold_score"]
    assert (scores >= metrics["threshold_at_fpr"])[~labels].mean() <= 0.01


def test_defenses_all_lists_defenses_only() -> None:
    assert defenses.__all__ == ["DPSGD"]
    for helper in ("DPTrainingResult", "MembershipInferenceDefense", "dp_train", "make_dp_compatible", "spent_epsilon"):
        assert hasattr(defenses, helper)  # still importable where our code imports them


def test_dpsgd_and_compute_mi_metrics_take_upstreams_arguments() -> None:
    dp_params = list(inspect.signature(DPSGD.__init__).parameters.values())[1:12]
    assert [(p.name, p.default) for p in dp_params] == [
        ("model", inspect.Parameter.empty), ("criterion", inspect.Parameter.empty),
        ("optimizer", inspect.Parameter.empty), ("train_loader", inspect.Parameter.empty),
        ("device", inspect.Parameter.empty), ("delta", inspect.Parameter.empty),
        ("max_per_sample_grad_norm", inspect.Parameter.empty), ("sigma", inspect.Parameter.empty),
        ("secure_rng", False), ("epochs", 5), ("max_physical_batch_size", None),
    ]  # fmt: skip
    mi_params = inspect.signature(compute_mi_metrics).parameters
    assert [(n, p.default) for n, p in mi_params.items()] == [
        ("preds", inspect.Parameter.empty), ("true_labels", inspect.Parameter.empty), ("fpr_threshold", 0.01)
    ]  # fmt: skip


def test_lira_image_shadows_take_the_channels_of_the_data() -> None:
    """Shadows built by name (no model_factory) on CIFAR-shaped rows: 3-channel shadows, whatever the architecture."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 3, 32, 32, generator=g), torch.randint(0, 10, (40,), generator=g)
    target = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    lira = LiRA(target, np.arange(20), "cnn", "m1", TensorDataset(x, y), "cifar10", 32 * 32, 10, 20, 0.5,
                nn.CrossEntropyLoss(), 2, 1, "cpu", None, 0)  # fmt: skip
    result = lira.attack()
    assert all(s.input_channels == 3 for s in lira.shadow_models_)
    assert len(result["lira_online_preds"]) == 40 and np.isfinite(result["lira_online_preds"]).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dpsgd_privacy_engine_on_an_uploaded_graph(census_rows, tmp_path) -> None:
    """An uploaded graph trains through torch.func per-sample gradients handed to the same Opacus engine."""
    from amulet.io import GraphModel, export_graph_model, load_graph_model

    train, _ = census_rows
    data = train.subset(np.arange(128))
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(data.x.shape[1], 16), nn.ReLU(), nn.Linear(16, 2))
    (path,) = export_graph_model(tmp_path / "mlp.pt2", model=module.eval(), input_shape=(data.x.shape[1],),
                                 num_classes=2)  # fmt: skip
    graph = load_graph_model(path)
    assert isinstance(graph, GraphModel)
    dp = DPSGD(graph, nn.CrossEntropyLoss(), torch.optim.SGD(graph.parameters(), lr=0.1), data.loader(32), "cpu",
               1e-5, 1.0, 1.0, epochs=1, accountant="rdp")  # fmt: skip
    dp.train_private()
    assert dp.privacy_engine.accountant.history == [(1.0, 0.25, 4)]
    assert dp.privacy_engine.accountant.get_epsilon(1e-5) == dp.epsilon_ > 0
