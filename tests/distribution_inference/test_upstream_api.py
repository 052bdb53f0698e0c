"""Distribution inference as upstream Amulet 0.6 defines it, on real census data (property: sex).

Upstream's signatures, names and behaviours that its users' scripts rely on: ``prepare_distribution_splits``
with ``n_tries`` and ``(x, y)`` loaders named ``target_*``, populations ``models_target_1/2``,
``train_model_population`` on ``(x, y)`` loaders, checkpoints under upstream's file names that a second run
(and ``WhiteBoxPIM``) loads instead of training, and bad arguments rejected by the constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import amulet.distribution_inference as di
from amulet.distribution_inference.attacks import (
    DistributionInferenceAttack,
    DistributionSplits,
    SuriEvans2022,
    WhiteBoxPIM,
    prepare_distribution_splits,
)

SEX = 1  # column of z (["race", "sex"])
TARGET_FIELDS = [
    "target_trainloader_1",
    "target_trainloader_2",
    "adv_trainloader_1",
    "adv_trainloader_2",
    "test_loader_1",
    "test_loader_2",
]
# upstream 0.6's constructor: names, order and defaults
BASE_PARAMS = [
    ("x_train", None), ("y_train", None), ("z_train", None), ("x_test", None), ("y_test", None), ("z_test", None),
    ("sensitive_columns", None), ("filter_column", None), ("ratio1", None), ("ratio2", None), ("model_arch", None),
    ("model_capacity", None), ("num_features", None), ("num_classes", None), ("num_models", None), ("epochs", None),
    ("batch_size", None), ("device", None), ("models_dir", None), ("dataset", None), ("exp_id", 0),
    ("filter_value", 1), ("drop_values", None), ("train_subsample", 1100), ("test_subsample", 500),
]  # fmt: skip
PIM_PARAMS = [("meta_epochs", 100), ("lr", 1e-2), ("inside_dims", None), ("random_seed", None)]
SPLITS_PARAMS = [
    ("x_train", None), ("y_train", None), ("z_train", None), ("x_test", None), ("y_test", None), ("z_test", None),
    ("sensitive_columns", None), ("filter_column", None), ("ratio1", None), ("ratio2", None),
    ("train_subsample", None), ("test_subsample", None), ("filter_value", 1), ("drop_values", None),
    ("class_imbalance", 3.0), ("n_tries", 100), ("batch_size", 256), ("seed", 42),
]  # fmt: skip


def _positional(fn, skip_self: bool = True) -> list[tuple[str, object]]:
    """(name, default or None) of the parameters that can be passed by position, in order."""
    params = list(inspect.signature(fn).parameters.values())[1 if skip_self else 0 :]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params if p.kind in kinds]


def _arrays(
    census, with_ids: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Census arrays; with ``with_ids`` the last feature is the row's index (to tell rows apart in loaders)."""
    x_train, x_test = census.x_train, census.x_test
    if with_ids:
        x_train = np.c_[x_train, np.arange(len(x_train))]
        x_test = np.c_[x_test, -1 - np.arange(len(x_test))]
    return x_train, census.y_train, census.z_train, x_test, census.y_test, census.z_test


def _attack(census, tmp_path: Path, cls=SuriEvans2022, **overrides):
    args = dict(
        sensitive_columns=list(census.sensitive_columns), filter_column="sex", ratio1=0.2, ratio2=0.8,
        model_arch="linearnet", model_capacity="m1", num_features=census.num_features, num_classes=2, num_models=2,
        epochs=1, batch_size=64, device="cpu", models_dir=tmp_path, dataset="census", exp_id=3,
        train_subsample=40, test_subsample=20,
    )  # fmt: skip
    arrays = dict(zip(("x_train", "y_train", "z_train", "x_test", "y_test", "z_test"), _arrays(census)))
    return cls(**{**arrays, **args, **overrides})


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.glob("*.pth"))}


# ---------------------------------------------------------------------------------------------------------------
# public names and signatures


def test_public_names_signatures_and_module_paths_are_upstreams() -> None:
    assert _positional(DistributionInferenceAttack.__init__) == BASE_PARAMS
    assert _positional(SuriEvans2022.__init__) == BASE_PARAMS
    assert _positional(WhiteBoxPIM.__init__) == BASE_PARAMS + PIM_PARAMS
    assert _positional(prepare_distribution_splits, skip_self=False) == SPLITS_PARAMS
    population = inspect.signature(DistributionInferenceAttack.train_model_population).parameters
    assert list(population) == [
        "self", "loader", "checkpoint_tag", "model_arch", "model_capacity", "num_models", "epochs",
    ]  # fmt: skip
    assert population["checkpoint_tag"].kind is inspect.Parameter.KEYWORD_ONLY
    attack_args = inspect.signature(SuriEvans2022.attack).parameters
    populations = {"models_adv_1", "models_adv_2", "models_target_1", "models_target_2"}
    assert populations | {"test_loader_1", "test_loader_2"} <= set(attack_args)
    assert populations <= set(inspect.signature(WhiteBoxPIM.attack).parameters)
    assert [f.name for f in dataclasses.fields(DistributionSplits)] == TARGET_FIELDS
    assert inspect.isabstract(DistributionInferenceAttack)
    assert {"DistributionInferenceAttack", "SuriEvans2022", "WhiteBoxPIM"} <= set(di.attacks.__all__)
    assert di.defenses.__all__ == []  # no defense yet, and nothing but defenses may be listed there
    assert di.metrics.__all__ == ["evaluate_distinguishing_accuracy"]
    # upstream's module paths
    from amulet.distribution_inference.attacks.distribution_inference_attack import DistributionInferenceAttack as A
    from amulet.distribution_inference.attacks.suri_evans_2022 import SuriEvans2022 as S
    from amulet.distribution_inference.attacks.white_box_pim import WhiteBoxPIM as W
    from amulet.distribution_inference.dataset_utils import prepare_distribution_splits as p

    assert (A, S, W, p) == (DistributionInferenceAttack, SuriEvans2022, WhiteBoxPIM, prepare_distribution_splits)


# ---------------------------------------------------------------------------------------------------------------
# prepare_distribution_splits


def test_splits_take_n_tries_and_yield_target_named_xy_loaders(census) -> None:
    arrays = _arrays(census, with_ids=True)
    columns = list(census.sensitive_columns)
    splits = prepare_distribution_splits(*arrays, columns, "sex", 0.2, 0.8, 60, 30, n_tries=30, batch_size=64, seed=5)
    x_batch, y_batch = next(iter(splits.target_trainloader_1))  # (x, y) batches, as upstream
    assert x_batch.dtype == torch.float32 and y_batch.dtype == torch.int64
    assert x_batch.shape[1] == census.num_features + 1
    z_train, z_test = census.z_train, census.z_test
    ids = {}
    for name in TARGET_FIELDS:
        ids[name] = _all_x(getattr(splits, name))[:, -1].long().numpy()
    for name, ratio in [("target_trainloader_1", 0.2), ("target_trainloader_2", 0.8), ("adv_trainloader_1", 0.2)]:
        rows = ids[name]
        # class-balanced draw: train_subsample label-1 rows and 3x as many label-0 rows
        assert len(rows) == 4 * 60 and int(census.y_train[rows].sum()) == 60, name
        assert abs(float((z_train[rows, SEX] == 1).mean()) - ratio) <= 0.02, name
    for name, ratio in [("test_loader_1", 0.2), ("test_loader_2", 0.8)]:
        rows = -1 - ids[name]  # adversary's draw then the target's, each 4 x test_subsample rows
        assert len(rows) == 2 * 4 * 30 and abs(float((z_test[rows, SEX] == 1).mean()) - ratio) <= 0.03, name
    # the target and adversary halves are disjoint
    target = set(ids["target_trainloader_1"]) | set(ids["target_trainloader_2"])
    assert not target & (set(ids["adv_trainloader_1"]) | set(ids["adv_trainloader_2"]))
    # same seed, same splits; the seed (not the global NumPy state) fixes them
    np.random.seed(0)
    again = prepare_distribution_splits(*arrays, columns, "sex", 0.2, 0.8, 60, 30, n_tries=30, batch_size=64, seed=5)
    assert torch.equal(_all_x(again.adv_trainloader_2), _all_x(splits.adv_trainloader_2))
    with pytest.warns(DeprecationWarning, match="target_trainloader_1"):
        assert splits.vic_trainloader_1 is splits.target_trainloader_1


def _all_x(loader: DataLoader) -> torch.Tensor:
    return torch.cat([batch[0] for batch in DataLoader(loader.dataset, batch_size=4096)])


def test_a_draw_smaller_than_one_batch_still_yields_it(census) -> None:
    """Upstream drops the last partial batch, so a draw under batch_size yields nothing to train on; ours keeps it."""
    splits = prepare_distribution_splits(*_arrays(census), list(census.sensitive_columns), "sex", 0.2, 0.8, 20, 10)
    batches = list(splits.adv_trainloader_2)
    assert len(batches) == 1 and len(batches[0][0]) == 80  # 20 label-1 rows + 60 label-0 rows, batch_size 256
    large = prepare_distribution_splits(
        *_arrays(census), list(census.sensitive_columns), "sex", 0.2, 0.8, 20, 10, batch_size=32
    )
    assert [len(b[0]) for b in large.adv_trainloader_2] == [32, 32]  # 80 rows: the partial batch of 16 is dropped


def test_more_tries_get_closer_to_the_ratio(census) -> None:
    """n_tries is the number of draws the best one is chosen from: one try lands where chance puts it."""
    arrays = _arrays(census, with_ids=True)
    columns = list(census.sensitive_columns)

    def gaps(n_tries: int) -> list[float]:
        out = []
        for seed in range(6):
            splits = prepare_distribution_splits(*arrays, columns, "sex", 0.5, 0.5, 20, 10, n_tries=n_tries, seed=seed)
            rows = _all_x(splits.target_trainloader_1)[:, -1].long().numpy()
            out.append(abs(float((census.z_train[rows, SEX] == 1).mean()) - 0.5))
        return out

    one, many = gaps(1), gaps(50)
    assert max(many) <= 0.02, many
    assert np.mean(many) < np.mean(one), (many, one)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"filter_column": "age"}, "filter_column.*one of"),
        ({"sensitive_columns": ["race", "sex", "extra"]}, "z_train has 2 columns"),
        ({"ratio1": 1.5}, "'ratio1'.*range \\[0, 1\\]"),
        ({"n_tries": 0}, "'n_tries'"),
        ({"train_subsample": 0}, "'train_subsample'"),
    ],
)
def test_splits_reject_bad_arguments(census, change, match) -> None:
    kwargs: dict[str, Any] = dict(
        sensitive_columns=list(census.sensitive_columns), filter_column="sex", ratio1=0.2, ratio2=0.8,
        train_subsample=20, test_subsample=10,
    )  # fmt: skip
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        prepare_distribution_splits(*_arrays(census), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# construction-time validation


@pytest.mark.parametrize(
    ("cls", "change", "match"),
    [
        (SuriEvans2022, {"ratio2": -0.1}, "'ratio2' parameter of SuriEvans2022 must be a float in the range \\[0, 1"),
        (SuriEvans2022, {"filter_column": "age"}, "'filter_column' parameter of SuriEvans2022 must be one of"),
        (SuriEvans2022, {"num_models": 0}, "'num_models' parameter of SuriEvans2022 must be an int"),
        (SuriEvans2022, {"epochs": 0}, "'epochs'"),
        (SuriEvans2022, {"model_arch": "bogus"}, "'model_arch' parameter of SuriEvans2022 must be one of .*linearnet"),
        (SuriEvans2022, {"model_capacity": "m9"}, "'model_capacity' parameter .* must be one of .*m1"),
        (SuriEvans2022, {"device": "bogus"}, "'device'"),
        (SuriEvans2022, {"drop_values": {"age": [1]}}, "'drop_values'"),
        (SuriEvans2022, {"sensitive_columns": ["sex"]}, "z_train has 2 columns"),
        (WhiteBoxPIM, {"lr": 0.0}, "'lr' parameter of WhiteBoxPIM"),
        (WhiteBoxPIM, {"meta_epochs": 0}, "'meta_epochs'"),
        (WhiteBoxPIM, {"inside_dims": [8, -1]}, "'inside_dims'.*positive ints"),
        (WhiteBoxPIM, {"ratio1": 2.0}, "'ratio1' parameter of WhiteBoxPIM"),
        (SuriEvans2022, {"x_test": {"x": 1}}, "'x_test' parameter of SuriEvans2022 must be an array"),
        (SuriEvans2022, {"sensitive_columns": "sex"}, "'sensitive_columns' parameter of SuriEvans2022"),
        (WhiteBoxPIM, {"recipe": "plain"}, "'recipe' parameter of WhiteBoxPIM must be an instance of Recipe"),
        (WhiteBoxPIM, {"progress": True}, "'progress' parameter of WhiteBoxPIM must be an instance of Progress"),
    ],
)
def test_constructor_rejects_bad_arguments(census, tmp_path, cls, change, match) -> None:
    with pytest.raises(ValueError, match=match):
        _attack(census, tmp_path, cls, **change)
    assert not list(tmp_path.iterdir())  # nothing was written before the error


def test_whitebox_pim_reads_linear_and_conv2d_layers_one_row_per_neuron() -> None:
    from torch import nn

    from amulet.distribution_inference.attacks._whitebox_pim import linear_layer_weights

    first = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(first, nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2, bias=False))
    conv, linear = linear_layer_weights(nn.DataParallel(model))
    assert conv.shape == (4, 3 * 3 * 3 + 1) and torch.equal(conv[:, -1], first.bias.detach())  # type: ignore[union-attr]
    assert linear.shape == (2, 4)


def test_attack_before_populations_says_what_to_call(census, tmp_path) -> None:
    for cls in (SuriEvans2022, WhiteBoxPIM):
        with pytest.raises(RuntimeError, match="prepare_model_populations"):
            _attack(census, tmp_path, cls).attack()


# ---------------------------------------------------------------------------------------------------------------
# populations and checkpoints


def test_train_model_population_accepts_xy_loaders_and_writes_upstream_names(census, tmp_path) -> None:
    attack = _attack(census, tmp_path, num_models=3, models_dir=str(tmp_path))
    assert attack.models_dir == str(tmp_path)  # stored as given; read as a path where the checkpoints are written
    rows = np.random.default_rng(0).choice(len(census.x_train), 300, replace=False)
    loader = DataLoader(
        TensorDataset(torch.as_tensor(census.x_train[rows]).float(), torch.as_tensor(census.y_train[rows]).long()),
        batch_size=64,
        shuffle=True,
    )
    models = attack.train_model_population(loader, checkpoint_tag="my_tag", num_models=2)
    assert len(models) == 2 and all(not m.training for m in models)
    assert all(not p.requires_grad for m in models for p in m.parameters())
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["my_tag_0_3.pth", "my_tag_1_3.pth"]
    first, second = (torch.cat([p.flatten() for p in m.parameters()]) for m in models)
    assert not torch.equal(first, second)  # one seed per model
    # the checkpoints hold the trained weights, and the next call loads them
    stamps = _mtimes(tmp_path)
    again = attack.train_model_population(loader, checkpoint_tag="my_tag", num_models=2)
    assert _mtimes(tmp_path) == stamps
    for m, n in zip(models, again):
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), n.state_dict().values()))


def test_second_run_and_whitebox_pim_load_the_populations_instead_of_training(census, tmp_path) -> None:
    first = _attack(census, tmp_path, num_models=2)
    first.prepare_model_populations()
    names = sorted(_mtimes(tmp_path))
    pattern = re.compile(r"^census_dist_inf_(adv|target)_(1|2)_linearnet_m1_[01]_3\.pth$")
    assert len(names) == 8 and all(pattern.match(n) for n in names), names
    assert len(first.models_target_1) == len(first.models_target_2) == 2
    with pytest.warns(DeprecationWarning, match="models_target_2"):
        assert first.models_vic_2 is first.models_target_2
    stamps = _mtimes(tmp_path)

    second = _attack(census, tmp_path, num_models=2)
    second.prepare_model_populations()
    pim = _attack(census, tmp_path, WhiteBoxPIM, num_models=2, meta_epochs=5)
    pim.prepare_model_populations()
    assert _mtimes(tmp_path) == stamps  # nothing was trained (and saved) again
    for other in (second, pim):
        for population in ("models_adv_1", "models_target_2"):
            for a, b in zip(getattr(first, population), getattr(other, population)):
                assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    result = pim.attack()
    assert result["predictions"].shape == (4,) and list(result["ground_truth"]) == [0, 0, 1, 1]

    # a checkpoint trained otherwise (here: more epochs) is retrained, not silently reused
    third = _attack(census, tmp_path, num_models=2, epochs=2)
    third.prepare_model_populations()
    assert all(_mtimes(tmp_path)[n] != stamps[n] for n in names)


def test_checkpoints_written_by_upstream_are_loaded(census, tmp_path) -> None:
    """A state dict saved with torch.save under upstream's name (no fingerprint next to it) is used as is."""
    from amulet.utils import initialize_model

    planted = {}
    for role in ("adv", "target"):
        for dist in ("1", "2"):
            model = initialize_model("linearnet", "m1", census.num_features, 2)
            path = tmp_path / f"census_dist_inf_{role}_{dist}_linearnet_m1_0_3.pth"
            torch.save(model.state_dict(), path)
            planted[role, dist] = model.state_dict()
    attack = _attack(census, tmp_path, num_models=1)
    attack.prepare_model_populations()
    loaded = attack.models_target_2[0].state_dict()
    assert all(torch.equal(loaded[k], planted["target", "2"][k]) for k in loaded)
