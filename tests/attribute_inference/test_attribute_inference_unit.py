"""Attribute inference: the metric against scikit-learn, and the attack on synthetic leakage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.exceptions import InvalidParameterError


def test_evaluate_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, size=(300, 2))
    preds = {}
    for i in range(2):
        conf = np.clip(z[:, i] * 0.3 + rng.random(300) * 0.7, 0, 1)
        preds[i] = {"predictions": conf > 0.5, "confidence_values": conf}
    out = evaluate_attribute_inference(z, preds)
    for i in range(2):
        assert out[i]["attack_accuracy"] == pytest.approx(balanced_accuracy_score(z[:, i], preds[i]["predictions"]))
        assert out[i]["auc_score"] == pytest.approx(roc_auc_score(z[:, i], preds[i]["confidence_values"]))


def test_evaluate_single_valued_attribute_has_nan_auc() -> None:
    z = np.ones((4, 1), int)
    out = evaluate_attribute_inference(z, {0: {"predictions": np.array([1, 1, 0, 1]), "confidence_values": np.ones(4)}})
    assert out[0]["attack_accuracy"] == pytest.approx(0.75)
    assert np.isnan(out[0]["auc_score"])


def test_attack_recovers_leaked_attribute_and_not_independent_one(seed: int) -> None:
    """A model whose logit carries attribute 0 but not attribute 1: the attack finds 0 and not 1."""
    rng = np.random.default_rng(seed)
    n = 1200
    z = rng.integers(0, 2, size=(n, 2))
    x = np.c_[z[:, 0] + 0.5 * rng.normal(size=n), rng.normal(size=(n, 2))].astype(np.float32)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
        model.bias.zero_()
    attack = DudduCIKM2022(model, x[:600], x[600:], z[:600], 256, "cpu", max_iter=100)
    out = evaluate_attribute_inference(z[600:], attack.attack())
    assert out[0]["attack_accuracy"] > 0.8
    assert out[0]["auc_score"] > 0.85
    assert abs(out[1]["attack_accuracy"] - 0.5) < 0.1
    assert set(attack.thresholds_) == {0, 1}


def test_attack_is_deterministic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    z = (x[:, :1] > 0).astype(int)
    model = torch.nn.Linear(3, 2)
    a = DudduCIKM2022(model, x[:150], x[150:], z[:150], 64, "cpu", max_iter=30).attack()
    b = DudduCIKM2022(model, x[:150], x[150:], z[:150], 64, "cpu", max_iter=30).attack()
    np.testing.assert_array_equal(a[0]["confidence_values"], b[0]["confidence_values"])


def test_non_binary_attribute_rejected() -> None:
    x = np.zeros((6, 3), np.float32)
    z = np.array([[0], [1], [2], [0], [1], [2]])
    with pytest.raises(InvalidParameterError, match="'z_train_adv' parameter of DudduCIKM2022"):
        DudduCIKM2022(torch.nn.Linear(3, 2), x, x, z, 4, "cpu").attack()


def test_bad_batch_size_named() -> None:
    x = np.zeros((6, 3), np.float32)
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter of DudduCIKM2022"):
        DudduCIKM2022(torch.nn.Linear(3, 2), x, x, np.zeros((6, 1)), 0, "cpu").attack()
