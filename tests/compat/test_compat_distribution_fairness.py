"""Distribution inference and discriminatory behaviour called as upstream Amulet 0.6.0 documents them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from compat_helpers import DEVICE, loader, sensitive_loader
from torch.utils.data import DataLoader

from amulet.discriminatory_behavior.defenses import AdversarialDebiasing
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.distribution_inference.attacks import SuriEvans2022, WhiteBoxPIM, prepare_distribution_splits
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.utils import get_accuracy, initialize_model

# ------------------------------------------------------------------------------------------ distribution inference


def _arrays(data) -> dict:
    return {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "z_train": data.z_train,
        "x_test": data.x_test,
        "y_test": data.y_test,
        "z_test": data.z_test,
        "sensitive_columns": data.sensitive_columns,
    }


def _filter_share(loader_: DataLoader, data, column: int) -> float:
    """Share of a loader's rows whose sensitive ``column`` is 1 (rows matched back to ``data`` by content)."""
    x = torch.cat([b[0] for b in loader_]).numpy()
    lookup = {row.tobytes(): z for row, z in zip(data.x_train.astype(np.float32), data.z_train, strict=True)}
    return float(np.mean([lookup[row.tobytes()][column] for row in x]))


def test_prepare_distribution_splits_names_and_ratios(census_small) -> None:
    splits = prepare_distribution_splits(
        **_arrays(census_small),
        filter_column="sex",
        ratio1=0.2,
        ratio2=0.8,
        train_subsample=100,
        test_subsample=50,
        n_tries=20,
        batch_size=64,
        seed=0,
    )
    for name in (
        "target_trainloader_1",
        "target_trainloader_2",
        "adv_trainloader_1",
        "adv_trainloader_2",
        "test_loader_1",
        "test_loader_2",
    ):
        assert isinstance(getattr(splits, name), DataLoader), name
    sex = census_small.sensitive_columns.index("sex")
    assert abs(_filter_share(splits.target_trainloader_1, census_small, sex) - 0.2) < 0.1
    assert abs(_filter_share(splits.target_trainloader_2, census_small, sex) - 0.8) < 0.1
    x, y = next(iter(splits.adv_trainloader_1))
    assert x.shape[1] == census_small.num_features and y.dtype == torch.int64


@pytest.fixture(scope="module")
def di_models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distribution_inference")


def _suri(data, models_dir: Path) -> SuriEvans2022:
    return SuriEvans2022(
        **_arrays(data),
        filter_column="sex",
        ratio1=0.1,
        ratio2=0.9,
        model_arch="linearnet",
        model_capacity="m1",
        num_features=data.num_features,
        num_classes=data.num_classes,
        num_models=3,
        epochs=1,
        batch_size=64,
        device=DEVICE,
        models_dir=models_dir,
        dataset="census",
        exp_id=0,
        train_subsample=200,
        test_subsample=100,
    )


def test_suri_evans_populations_checkpoints_and_attack(census_small, di_models_dir: Path) -> None:
    attack = _suri(census_small, di_models_dir)
    attack.prepare_model_populations()
    for name in ("models_adv_1", "models_adv_2", "models_target_1", "models_target_2"):
        assert len(getattr(attack, name)) == 3, name
    expected = {
        f"census_dist_inf_{role}_{dist}_linearnet_m1_{k}_0.pth"
        for role in ("adv", "target")
        for dist in ("1", "2")
        for k in range(3)
    }
    written = {p.name for p in di_models_dir.iterdir() if p.is_file()}
    assert expected <= written, sorted(expected - written)
    results = attack.attack()
    assert set(results) >= {"predictions", "ground_truth"}
    predictions, truth = np.asarray(results["predictions"]), np.asarray(results["ground_truth"])
    assert predictions.shape == truth.shape and predictions.ndim == 1
    assert set(np.unique(truth)) == {0.0, 1.0}
    assert ((predictions >= 0) & (predictions <= 1)).all()
    metrics = evaluate_distinguishing_accuracy(predictions, truth)
    assert set(metrics) >= {"distinguishing_accuracy", "auc_score"}
    assert 0.0 <= metrics["distinguishing_accuracy"] <= 1.0
    # upstream's keyword overrides score other populations: swapping the targets swaps the decision
    swapped = attack.attack(
        models_adv_1=attack.models_adv_1,
        models_adv_2=attack.models_adv_2,
        models_target_1=attack.models_target_2,
        models_target_2=attack.models_target_1,
    )
    assert np.asarray(swapped["predictions"]).shape == predictions.shape

    # a second run, and the white-box attack on the same directory, reuse the saved populations
    stamps = {p.name: p.stat().st_mtime_ns for p in di_models_dir.iterdir() if p.is_file()}
    again = _suri(census_small, di_models_dir)
    again.prepare_model_populations()
    for a, b in zip(attack.models_target_1, again.models_target_1, strict=True):
        for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(pa, pb)
    whitebox = WhiteBoxPIM(
        **_arrays(census_small),
        filter_column="sex",
        ratio1=0.1,
        ratio2=0.9,
        model_arch="linearnet",
        model_capacity="m1",
        num_features=census_small.num_features,
        num_classes=census_small.num_classes,
        num_models=3,
        epochs=1,
        batch_size=64,
        device=DEVICE,
        models_dir=di_models_dir,
        dataset="census",
        exp_id=0,
        train_subsample=200,
        test_subsample=100,
        meta_epochs=5,
        lr=1e-2,
    )
    whitebox.prepare_model_populations()
    assert {p.name: p.stat().st_mtime_ns for p in di_models_dir.iterdir() if p.is_file()} == stamps
    white = whitebox.attack()
    assert np.asarray(white["predictions"]).shape == np.asarray(white["ground_truth"]).shape == (6,)


def test_train_model_population_accepts_an_x_y_loader(census_small, tmp_path: Path) -> None:
    attack = _suri(census_small, tmp_path)
    x = torch.from_numpy(census_small.x_train[:256]).float()
    y = torch.from_numpy(census_small.y_train[:256]).long()
    models = attack.train_model_population(
        DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64), checkpoint_tag="custom", num_models=2
    )
    assert len(models) == 2
    assert all(isinstance(m, torch.nn.Module) for m in models)
    assert {"custom_0_0.pth", "custom_1_0.pth"} <= {p.name for p in tmp_path.iterdir()}
    assert models[0](x[:4]).shape == (4, 2)


# ---------------------------------------------------------------------------------------- discriminatory behavior


def test_adversarial_debiasing_and_subgroup_metrics(census_small, census_target) -> None:
    data = census_small
    train_z = sensitive_loader(data.x_train, data.y_train, data.z_train)
    test_z = sensitive_loader(data.x_test, data.y_test, data.z_test)
    keys = {
        "acc_true",
        "acc_false",
        "demographic_parity",
        "true_positive_parity",
        "false_positive_parity",
        "p_rule",
        "equalized_odds",
    }
    before = DiscriminatoryBehavior(census_target, test_z, DEVICE).evaluate_subgroup_metrics()
    assert set(before) == {0, 1}
    for i in (0, 1):
        assert set(before[i]) >= keys
        assert before[i]["equalized_odds"] == pytest.approx(
            before[i]["true_positive_parity"] + before[i]["false_positive_parity"]
        )
        assert 0.0 <= before[i]["p_rule"] <= 100.0

    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", data.num_features, data.num_classes)
    model.load_state_dict(census_target.state_dict())
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # upstream: (model, criterion, optimizer, train_loader, test_loader, n_sensitive_attrs, n_classes, lambdas,
    # device, epochs)
    debiasing = AdversarialDebiasing(
        model, criterion, optimizer, train_z, test_z, data.z_train.shape[1], data.num_classes,
        torch.Tensor([40, 40]), DEVICE, 1,
    )  # fmt: skip
    fair = debiasing.train_fair()
    assert isinstance(fair, torch.nn.Module)
    assert get_accuracy(fair, loader(data.test_set), DEVICE) > 70.0
    after = DiscriminatoryBehavior(fair, test_z, DEVICE).evaluate_subgroup_metrics()
    assert set(after[1]) >= keys


def test_discriminatory_behavior_static_metrics_on_a_hand_example() -> None:
    predictions = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    targets = np.array([1, 0, 0, 1, 1, 1, 0, 0])
    attributes = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    # P(pred=1 | a=1) = 2/4, P(pred=1 | a=0) = 1/4
    assert DiscriminatoryBehavior.demographic_parity(predictions, attributes) == pytest.approx(0.25, abs=1e-6)
    # p-rule = min(0.5 / 0.25, 0.25 / 0.5) in percent
    assert DiscriminatoryBehavior.p_rule(predictions, attributes) == pytest.approx(50.0)
    acc_true, acc_false = DiscriminatoryBehavior.accuracy(predictions, targets, attributes)
    assert acc_true == pytest.approx(50.0) and acc_false == pytest.approx(75.0)
