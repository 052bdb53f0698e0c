"""Evasion, poisoning and model stealing called as upstream Amulet 0.6.0 documents them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compat_helpers import BATCH_SIZE, DEVICE, loader
from torch.utils.data import DataLoader, Subset, TensorDataset

from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.defenses import AdversarialTrainingPGD
from amulet.poisoning.attacks import BadNets
from amulet.poisoning.defenses import OutlierRemoval
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import DatasetInference, WatermarkNN
from amulet.unauth_model_ownership.metrics import evaluate_extraction
from amulet.utils import get_accuracy, initialize_model, train_classifier


def _rows(dataset, n: int) -> TensorDataset:
    xs, ys = zip(*(dataset[i] for i in range(n)), strict=True)
    return TensorDataset(torch.stack(xs), torch.stack([torch.as_tensor(y) for y in ys]))


def _all_x(loader_: DataLoader) -> torch.Tensor:
    return torch.cat([batch[0] for batch in loader_])


def _all_y(loader_: DataLoader) -> torch.Tensor:
    return torch.cat([batch[1] for batch in loader_])


# ----------------------------------------------------------------------------------------------------- evasion


def test_evasion_pgd_positional_call_returns_a_bounded_adversarial_loader(census_small, census_target) -> None:
    test = _rows(census_small.test_set, 300)
    epsilon = 0.1
    # upstream: EvasionPGD(model, test_loader, device, batch_size, epsilon); attack() -> DataLoader
    evasion = EvasionPGD(census_target, loader(test), DEVICE, 64, epsilon)
    adv_loader = evasion.attack()
    assert isinstance(adv_loader, DataLoader)
    assert adv_loader.batch_size == 64
    x_adv, y_adv = _all_x(adv_loader), _all_y(adv_loader)
    x, y = test.tensors
    assert x_adv.shape == x.shape
    torch.testing.assert_close(y_adv, y)  # the loader carries the original labels
    assert float((x_adv - x).abs().max()) <= epsilon + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0  # default clip_min=0, clip_max=1
    clean = get_accuracy(census_target, loader(test), DEVICE)
    assert get_accuracy(census_target, adv_loader, DEVICE) < clean - 5.0


def test_evasion_pgd_attacks_the_models_predictions_not_the_loaders_labels(census_small, census_target) -> None:
    """Upstream runs cleverhans' PGD with ``y=None``: it moves inputs away from the model's own predictions.

    With the loader's labels flipped, such an attack still moves predictions away from what the model said,
    i.e. towards the flipped labels; an attack on the loader's labels would move them the other way.
    """
    test = _rows(census_small.test_set, 300)
    x, y = test.tensors
    flipped = DataLoader(TensorDataset(x, 1 - y), batch_size=BATCH_SIZE)
    torch.manual_seed(0)
    adv_true = _all_x(EvasionPGD(census_target, loader(test), DEVICE, BATCH_SIZE, 0.1).attack())
    torch.manual_seed(0)
    adv_flipped_loader = EvasionPGD(census_target, flipped, DEVICE, BATCH_SIZE, 0.1).attack()
    # the labels do not steer the perturbation
    torch.testing.assert_close(_all_x(adv_flipped_loader), adv_true)
    before = get_accuracy(census_target, flipped, DEVICE)
    after = get_accuracy(census_target, adv_flipped_loader, DEVICE)
    assert after > before + 5.0, (before, after)


def test_adversarial_training_takes_a_clean_and_an_adversarial_step_per_batch(census_small) -> None:
    train = _rows(census_small.train_set, 256)
    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps: list[int] = []
    original_step = optimizer.step

    def counting_step(*args, **kwargs):
        steps.append(1)
        return original_step(*args, **kwargs)

    optimizer.step = counting_step  # type: ignore[method-assign]
    train_loader = loader(train, batch_size=64)
    epochs = 2
    # upstream: AdversarialTrainingPGD(model, criterion, optimizer, train_loader, device, epochs, epsilon)
    defense = AdversarialTrainingPGD(model, criterion, optimizer, train_loader, DEVICE, epochs, 0.05)
    robust = defense.train_robust()
    assert isinstance(robust, torch.nn.Module)
    assert len(steps) == 2 * len(train_loader) * epochs, len(steps)


# --------------------------------------------------------------------------------------------------- poisoning


def test_badnets_poisons_a_share_of_all_rows(census_small) -> None:
    train = census_small.train_set
    n = len(train)
    portion = 0.1
    # upstream's example passes data.modality as the dataset type
    poisoning = BadNets(1, portion, 0, census_small.modality)
    poisoned = poisoning.poison_train(train)
    assert isinstance(poisoned, TensorDataset) and len(poisoned) == n
    x0, y0 = (t for t in train.tensors)
    x1, y1 = poisoned.tensors
    changed = (x1 != x0).any(dim=1) | (y1 != y0)
    assert int(changed.sum()) == int(n * portion)
    assert bool((y1[changed] == 1).all()) and bool((y0[changed] != 1).all())


def test_badnets_portion_is_capped_by_the_rows_not_already_of_the_trigger_label(census_small) -> None:
    train = census_small.train_set
    n = len(train)
    y0 = train.tensors[1]
    candidates = int((y0 != 0).sum())
    assert candidates < int(n * 0.9)
    poisoned = BadNets(0, 0.9, 0, "tabular").poison_train(train)
    changed = (poisoned.tensors[0] != train.tensors[0]).any(dim=1) | (poisoned.tensors[1] != y0)
    assert int(changed.sum()) == candidates


def test_badnets_poison_test_keeps_only_rows_to_flip(fmnist_small_compat) -> None:
    test = _rows(fmnist_small_compat.test_set, 200)
    trigger_label = 0
    poisoned = BadNets(trigger_label, 0.1, 0, "image").poison_test(test)
    assert isinstance(poisoned, TensorDataset)
    assert len(poisoned) == int((test.tensors[1] != trigger_label).sum())
    assert bool((poisoned.tensors[1] == trigger_label).all())
    assert poisoned.tensors[0].shape[1:] == (1, 28, 28)


def test_outlier_removal_keyword_call_retrains_on_a_tensor_dataset(census_small, census_target) -> None:
    train_loader = loader(_rows(census_small.train_set, 400))
    test_loader = loader(_rows(census_small.test_set, 200))
    seen: list[DataLoader] = []

    def recording_train(model, data_loader, criterion, optimizer, epochs, device):
        seen.append(data_loader)
        return train_classifier(model, data_loader, criterion, optimizer, epochs, device)

    model = initialize_model("linearnet", "m1", census_small.num_features, 2)
    model.load_state_dict(census_target.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    defense = OutlierRemoval(
        model,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        train_loader,
        test_loader,
        DEVICE,
        train_function=recording_train,
        percent=10,
        epochs=1,
        batch_size=64,
    )
    assert isinstance(defense.train_robust(), torch.nn.Module)
    retrain = seen[-1]  # the last call retrains on the kept points
    assert isinstance(retrain.dataset, TensorDataset)
    kept = len(retrain.dataset)
    assert 0.85 * 400 <= kept <= 0.92 * 400, kept


def test_outlier_removal_keeps_every_point_when_shapley_values_tie(census_small, census_target) -> None:
    # one label everywhere: every training point agrees with every test label equally, so all values tie
    y_train = torch.from_numpy(census_small.y_train)
    y_test = torch.from_numpy(census_small.y_test)
    train = Subset(census_small.train_set, torch.nonzero(y_train == 0).flatten()[:300].tolist())
    test = Subset(census_small.test_set, torch.nonzero(y_test == 0).flatten()[:100].tolist())
    seen: list[DataLoader] = []

    def recording_train(model, data_loader, criterion, optimizer, epochs, device):
        seen.append(data_loader)
        return model

    defense = OutlierRemoval(
        census_target,
        torch.nn.CrossEntropyLoss(),
        torch.optim.Adam(census_target.parameters(), lr=1e-3),
        loader(train),
        loader(test),
        DEVICE,
        recording_train,
        10,
        1,
        64,
    )
    defense.train_robust()
    retrain = seen[-1]
    assert isinstance(retrain.dataset, TensorDataset)
    assert len(retrain.dataset) == 300


# ------------------------------------------------------------------------------------------------ model stealing


@pytest.mark.parametrize("loss_type", ["mse", "kl", "ce"])
def test_model_extraction_and_evaluate_extraction(census_small, census_target, loss_type: str) -> None:
    adv_loader = loader(_rows(census_small.train_set, 1024))
    torch.manual_seed(0)
    attack_model = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)
    optimizer = torch.optim.Adam(attack_model.parameters(), lr=1e-3)
    # upstream's example: ModelExtraction(target_model, model, optimizer, adv_train_loader, device, epochs)
    extraction = ModelExtraction(census_target, attack_model, optimizer, adv_loader, DEVICE, 5, loss_type=loss_type)
    stolen = extraction.attack()
    assert isinstance(stolen, torch.nn.Module)
    results = evaluate_extraction(census_target, stolen, loader(census_small.test_set), DEVICE)
    assert set(results) >= {"target_accuracy", "stolen_accuracy", "fidelity", "correct_fidelity"}
    for key in ("target_accuracy", "stolen_accuracy", "fidelity", "correct_fidelity"):
        assert 0.0 <= results[key] <= 100.0, (key, results[key])  # percentages, as upstream
    assert results["fidelity"] > 75.0, results


def test_model_extraction_rejects_an_unknown_loss_type_at_construction(census_target) -> None:
    attack_model = initialize_model("linearnet", "m1", 10, 2)
    optimizer = torch.optim.Adam(attack_model.parameters(), lr=1e-3)
    empty = DataLoader(TensorDataset(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="loss_type"):
        ModelExtraction(census_target, attack_model, optimizer, empty, DEVICE, 1, "bogus")


def test_dataset_inference_fingerprint_returns_p_values(census_small, census_target) -> None:
    n = 32
    train_loader = loader(_rows(census_small.train_set, n), batch_size=n)
    test_loader = loader(_rows(census_small.test_set, n), batch_size=n)
    # upstream's positional order: (..., num_classes, device, dataset, alpha_l1, alpha_l2, alpha_linf, k, gap,
    # num_iter, regressor_embed, batch_size)
    fingerprinting = DatasetInference(
        census_target, census_target, train_loader, test_loader, 2, DEVICE, "1D", 1.0, 0.01, 0.001, 1, 0.001, 20, 0, n
    )
    results = fingerprinting.fingerprint()
    assert set(results) >= {"target", "suspect"}
    for name in ("target", "suspect"):
        assert 0.0 <= float(results[name]["p-value"]) <= 1.0
        assert np.isfinite(float(results[name]["mean_diff"]))


def test_watermark_nn_tabular(census_small) -> None:
    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", census_small.num_features, 2)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = loader(_rows(census_small.train_set, 512))
    wm = WatermarkNN(
        target_model=model,
        criterion=criterion,
        optimizer=optimizer,
        train_loader=train_loader,
        device=DEVICE,
        wm_path=None,
        tabular=True,
        num_classes=2,
        epochs=3,
    )
    watermarked = wm.watermark()
    assert isinstance(watermarked, torch.nn.Module)
    assert isinstance(wm.verify(watermarked), bool)
