"""Membership, attribute and distribution inference and data reconstruction called as upstream Amulet 0.6.0
documents them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compat_helpers import DEVICE, loader
from torch.utils.data import DataLoader, Subset, TensorDataset

from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.membership_inference.attacks import LiRA
from amulet.membership_inference.defenses import DPSGD
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.utils import get_accuracy, initialize_model


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*")}


# ------------------------------------------------------------------------------------------ membership inference


@pytest.fixture(scope="module")
def lira_setup(census_small, tmp_path_factory):
    train_set = TensorDataset(*(t[:600] for t in census_small.train_set.tensors))
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(train_set), size=300, replace=False))
    torch.manual_seed(0)
    target = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)
    optimizer = torch.optim.Adam(target.parameters(), lr=1e-3)
    from amulet.utils import train_classifier

    target = train_classifier(
        target, loader(Subset(train_set, list(keep))), torch.nn.CrossEntropyLoss(), optimizer, 5, DEVICE
    )
    return train_set, keep, target, tmp_path_factory.mktemp("shadow_models")


def _lira(census_small, lira_setup) -> LiRA:
    train_set, keep, target, models_dir = lira_setup
    # upstream's example: all sixteen arguments positionally
    return LiRA(
        target,
        keep,
        "linearnet",
        "m1",
        train_set,
        "census",
        census_small.num_features,
        census_small.num_classes,
        128,
        0.5,
        torch.nn.CrossEntropyLoss(),
        4,
        2,
        DEVICE,
        models_dir,
        0,
    )


def test_lira_prepare_shadow_models_then_attack_reuses_them(census_small, lira_setup) -> None:
    train_set, keep, _, models_dir = lira_setup
    mem_inf = _lira(census_small, lira_setup)
    mem_inf.prepare_shadow_models()
    saved = _snapshot(models_dir)
    assert saved, "prepare_shadow_models() saved nothing in models_dir"
    results = mem_inf.attack()
    assert _snapshot(models_dir) == saved, "attack() retrained the shadows prepare_shadow_models() saved"
    assert set(results) >= {"lira_online_preds", "lira_offline_preds", "true_labels"}
    n = len(train_set)
    for key in ("lira_online_preds", "lira_offline_preds", "true_labels"):
        assert np.asarray(results[key]).shape == (n,), key
    expected = np.zeros(n, dtype=bool)
    expected[keep] = True
    np.testing.assert_array_equal(np.asarray(results["true_labels"]).astype(bool), expected)
    assert np.isfinite(results["lira_online_preds"]).all() and np.isfinite(results["lira_offline_preds"]).all()
    metrics = compute_mi_metrics(results["lira_online_preds"], results["true_labels"])
    assert 0.0 <= metrics["auc"] <= 1.0

    # a second run on the same models_dir loads the shadows instead of training them again
    again = _lira(census_small, lira_setup)
    again.prepare_shadow_models()
    assert _snapshot(models_dir) == saved
    np.testing.assert_allclose(again.attack()["lira_online_preds"], results["lira_online_preds"], rtol=1e-5)


def test_compute_mi_metrics_keys_and_threshold_meaning() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    preds = labels * 0.6 + rng.normal(0.0, 0.5, 400)
    metrics = compute_mi_metrics(preds, labels)
    assert set(metrics) >= {"auc", "balanced_acc", "tpr_at_fpr", "threshold_score"}
    assert all(isinstance(metrics[k], float) for k in ("auc", "balanced_acc", "tpr_at_fpr", "threshold_score"))
    # threshold_score is the threshold that reaches the best balanced accuracy: members are preds >= it
    called = preds >= metrics["threshold_score"]
    tpr = called[labels == 1].mean()
    tnr = (~called)[labels == 0].mean()
    assert (tpr + tnr) / 2 == pytest.approx(metrics["balanced_acc"])
    from sklearn.metrics import roc_auc_score

    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, preds))


def test_dpsgd_positional_call_exposes_the_privacy_engine(census_small) -> None:
    train_loader = loader(TensorDataset(*(t[:1024] for t in census_small.train_set.tensors)), batch_size=128)
    torch.manual_seed(0)
    model = initialize_model(
        "linearnet", "m1", census_small.num_features, census_small.num_classes, None, batch_norm=False
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    delta = 1e-5
    # upstream: DPSGD(model, criterion, optimizer, train_loader, device, delta, max_grad_norm, sigma, secure_rng,
    # epochs)
    dp_training = DPSGD(model, torch.nn.CrossEntropyLoss(), optimizer, train_loader, DEVICE, delta, 1.0, 1.0, False, 2)
    dp_model = dp_training.train_private()
    epsilon = dp_training.privacy_engine.accountant.get_epsilon(delta)
    assert np.isfinite(epsilon) and epsilon > 0
    assert get_accuracy(dp_model, loader(census_small.test_set), DEVICE) > 50.0

    # deliberate divergence (docs/upstream-compat.md): the result is a plain module whose input gradients work,
    # so evasion and data reconstruction can attack it
    assert type(dp_model).__module__.startswith("amulet."), type(dp_model)
    x = torch.from_numpy(census_small.x_test[:8]).float().requires_grad_(True)
    dp_model.eval()
    dp_model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------------- attribute inference


def test_duddu_attack_and_metrics(census_small, census_target) -> None:
    from sklearn.model_selection import train_test_split

    split = train_test_split(
        census_small.x_train, census_small.y_train, census_small.z_train, test_size=0.5, random_state=0
    )
    _, x_adv, _, _, _, z_adv = split
    # upstream: DudduCIKM2022(target_model, x_train_adv, x_test, z_train_adv, batch_size, device)
    attack = DudduCIKM2022(census_target, x_adv, census_small.x_test, z_adv, 256, DEVICE)
    results = attack.attack()
    assert set(results) == {0, 1}
    n = len(census_small.x_test)
    for i in (0, 1):
        assert set(results[i]) >= {"predictions", "confidence_values"}
        assert np.asarray(results[i]["predictions"]).shape == (n,)
        assert np.asarray(results[i]["confidence_values"]).shape[0] == n
    metrics = evaluate_attribute_inference(census_small.z_test, results)
    for i in (0, 1):
        assert set(metrics[i]) >= {"attack_accuracy", "auc_score"}
        assert 0.0 <= metrics[i]["attack_accuracy"] <= 1.0 and 0.0 <= metrics[i]["auc_score"] <= 1.0


# ------------------------------------------------------------------------------------------ data reconstruction


def test_fredrikson_on_fmnist_and_similarity_keys(fmnist_small_compat, fmnist_target) -> None:
    data = fmnist_small_compat
    input_size = (1, *tuple(data.test_set[0][0].shape))
    inversion_model = torch.nn.Sequential(fmnist_target, torch.nn.Softmax(dim=1))
    # upstream: FredriksonCCS2015(target_model, input_size, output_size, device, alpha)
    data_recon = FredriksonCCS2015(inversion_model, input_size, data.num_classes, DEVICE, 20)
    reverse_data = data_recon.attack()
    assert len(reverse_data) == data.num_classes
    assert all(tuple(r.shape)[-2:] == (28, 28) for r in reverse_data)
    test_loader = DataLoader(Subset(data.test_set, range(300)), batch_size=1, shuffle=False)
    results = evaluate_similarity(test_loader, reverse_data, input_size, data.num_classes, DEVICE)
    assert set(results) >= {"mean_mse", "class_mse", "mean_ssim", "class_ssim"}
    assert set(results["class_mse"]) == set(range(10)) and set(results["class_ssim"]) == set(range(10))
    assert np.isfinite(results["mean_mse"]) and results["mean_mse"] >= 0
    assert np.isfinite(results["mean_ssim"]) and -1.0 <= results["mean_ssim"] <= 1.0


def test_similarity_on_tabular_data_does_not_divide_by_zero(census_small, census_target) -> None:
    """Deliberate divergence (docs/upstream-compat.md): upstream computes SSIM on 1-D rows with the
    reconstruction's own value range, which fails or divides by zero; ours reports finite MSE numbers and
    no SSIM for a table, rather than a number that cannot mean what its label says."""
    input_size = (1, census_small.num_features)
    inversion_model = torch.nn.Sequential(census_target, torch.nn.Softmax(dim=1))
    reverse_data = FredriksonCCS2015(inversion_model, input_size, 2, DEVICE, 20).attack()
    test_loader = DataLoader(Subset(census_small.test_set, range(200)), batch_size=1, shuffle=False)
    results = evaluate_similarity(test_loader, reverse_data, input_size, 2, DEVICE)
    assert np.isfinite(results["mean_mse"])
    assert set(results["class_mse"]) == {0, 1}
    assert "mean_ssim" not in results and "class_ssim" not in results
