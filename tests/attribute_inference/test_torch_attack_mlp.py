"""The attack MLP of DudduCIKM2022, trained in torch, reaches scikit-learn MLPClassifier's attack accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.recipes import Recipe
from amulet.settings import get_settings
from amulet.utils import TensorData, TrainConfig


def _sklearn_attack(attack: DudduCIKM2022, z_adv: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """Upstream's attack model (scikit-learn MLPClassifier) on the same features, with the same threshold rule."""
    train_features, test_features = attack._outputs(attack.x_train_adv), attack._outputs(attack.x_test)
    out = {}
    for i in range(z_adv.shape[1]):
        mlp = MLPClassifier(
            solver="adam", alpha=1e-3, hidden_layer_sizes=(64, 128, 32), max_iter=300, random_state=1337
        )
        with threadpool_limits(limits=1):
            mlp.fit(train_features, z_adv[:, i])
        fpr, tpr, thresholds = roc_curve(z_adv[:, i], mlp.predict_proba(train_features)[:, 1])
        threshold = float(min(thresholds[int(np.argmax(np.sqrt(tpr * (1 - fpr))))], 1.0))
        scores = mlp.predict_proba(test_features)[:, 1]
        out[i] = {"predictions": scores >= threshold, "confidence_values": scores}
    return out


@pytest.fixture(scope="module")
def census_attack(census):
    order = np.random.default_rng(0).permutation(len(census.x_train))
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    member, adversary = train.subset(order[:3000]), train.subset(order[3000:6000])
    from amulet.models import LinearNet

    target = Recipe(TrainConfig(epochs=4, batch_size=128)).train(
        lambda: LinearNet(census.num_features, 2, [64, 32]), member, seed=0
    )
    z_adv = adversary.z.numpy().astype(int)
    attack = DudduCIKM2022(target, adversary.x.numpy(), census.x_test[:3000], z_adv, 256, "cpu")
    return attack, z_adv, census.z_test[:3000]


def test_torch_attack_mlp_matches_sklearn_accuracy_on_census(census_attack) -> None:
    attack, z_adv, z_test = census_attack
    ours = evaluate_attribute_inference(z_test, attack.attack())
    reference = evaluate_attribute_inference(z_test, _sklearn_attack(attack, z_adv))
    for i in (0, 1):
        # the attack learns something (above chance) and as much as scikit-learn's MLP
        assert ours[i]["attack_accuracy"] > 0.55
        assert abs(ours[i]["attack_accuracy"] - reference[i]["attack_accuracy"]) <= 0.01, (i, ours, reference)
    assert set(attack.attack_models_) == {0, 1}
    assert isinstance(attack.attack_models_[0], torch.nn.Sequential)


def test_attack_runs_with_the_thread_setting_and_restores_the_callers(census_attack, monkeypatch) -> None:
    attack, _, _ = census_attack
    before = torch.get_num_threads()
    seen: list[int] = []
    handle = attack.target_model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    monkeypatch.setenv("AMULET_NUM_THREADS", "3")
    get_settings.cache_clear()
    try:
        torch.set_num_threads(2)
        attack.max_iter = 5
        attack.attack()
        assert seen and set(seen) == {3}
        assert torch.get_num_threads() == 2
    finally:
        handle.remove()
        attack.max_iter = 300
        get_settings.cache_clear()
        torch.set_num_threads(before)
