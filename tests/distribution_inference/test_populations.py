"""All populations of a distribution-inference attack train in one stacked run, as the per-population runs did."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from amulet.distribution_inference.attacks import SuriEvans2022, _populations
from amulet.models import LinearNet
from amulet.utils import TensorData


def _attack(census, models_dir=None) -> SuriEvans2022:
    return SuriEvans2022(
        census.x_train, census.y_train, census.z_train, census.x_test, census.y_test, census.z_test,
        list(census.sensitive_columns), "sex", 0.2, 0.8, "linearnet", "m1", census.num_features, 2, 3, 2, 64,
        "cpu", models_dir, "census", 4, model_factory=lambda: LinearNet(census.num_features, 2, [16, 8]), seed=5,
    )  # fmt: skip


@pytest.fixture(scope="module")
def populations(census) -> dict[str, tuple[TensorData, list[np.ndarray]]]:
    train = TensorData.from_numpy(census.x_train[:2000], census.y_train[:2000])
    other = TensorData.from_numpy(census.x_train[2000:3000], census.y_train[2000:3000])
    rng = np.random.default_rng(0)
    return {
        "a": (train, [rng.choice(2000, 300, replace=False) for _ in range(3)]),
        "b": (other, [rng.choice(1000, 250 + 10 * k, replace=False) for k in range(2)]),  # other sizes, other data
        "c": (train, [rng.choice(2000, 300, replace=False) for _ in range(2)]),
    }


def _weights(models: list[nn.Module]) -> list[torch.Tensor]:
    return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models]


def test_one_run_for_all_populations_trains_the_per_population_models(census, populations, monkeypatch) -> None:
    attack = _attack(census)
    calls: list[int] = []
    real = _populations.train_population

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(_populations, "train_population", counting)
    together = attack._fit_populations(populations)
    assert calls == [7]  # every model of the three populations in one run
    for tag, (data, subsets) in populations.items():
        alone = attack._fit_population(data, subsets, tag)
        assert len(together[tag]) == len(subsets)
        for a, b in zip(_weights(together[tag]), _weights(alone)):
            # same rows, seed and procedure; the stacked kernels of a larger stack round differently
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        assert all(not m.training and not any(p.requires_grad for p in m.parameters()) for m in together[tag])
    # the seeds are per population and model, so populations of equal rows still differ
    assert not torch.equal(_weights(together["a"])[0], _weights(together["c"])[0])


def test_checkpoints_keep_upstream_names_and_load_without_training(census, populations, tmp_path, monkeypatch) -> None:
    attack = _attack(census, models_dir=tmp_path)
    first = attack._fit_populations(populations)
    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert names == sorted(f"{tag}_{k}_4.pth" for tag, (_, subsets) in populations.items() for k in range(len(subsets)))

    def no_training(*args, **kwargs):
        raise AssertionError("every model should load from its checkpoint")

    monkeypatch.setattr(_populations, "train_population", no_training)
    again = _attack(census, models_dir=tmp_path)._fit_populations(populations)
    for tag in populations:
        for a, b in zip(_weights(first[tag]), _weights(again[tag])):
            assert torch.equal(a, b)


def _small_pool_attack(census, train_subsample: int) -> SuriEvans2022:
    """6,000 census rows split in halves: at ratio 0.2 the rows of one sex cannot fill a draw of 1,100 label-1
    rows (the layer-1 benchmark's setting, at a fifth of its size)."""
    n = 6000
    return SuriEvans2022(
        census.x_train[:n], census.y_train[:n], census.z_train[:n], census.x_test[:2000], census.y_test[:2000],
        census.z_test[:2000], list(census.sensitive_columns), "sex", 0.2, 0.8, "linearnet", "m1",
        census.num_features, 2, 2, 1, 256, "cpu", None, "census", train_subsample=train_subsample,
        test_subsample=100, model_factory=lambda: LinearNet(census.num_features, 2, [8]), seed=3,
    )  # fmt: skip


def test_populations_of_unequal_size_are_reported_with_the_fix(census, caplog) -> None:
    unequal = _small_pool_attack(census, 1100)
    with caplog.at_level("WARNING", logger="amulet.distribution_inference.attacks._populations"):
        unequal.prepare_model_populations()
    rows = unequal.population_rows_
    assert set(rows) == {"adv_1", "adv_2", "target_1", "target_2"}
    assert rows["adv_1"] < 0.9 * rows["adv_2"]  # the ratio-0.2 pool ran out of rows
    assert rows["adv_1"] == len(unequal.splits.adv_trainloader_1.dataset)  # model 0's draw, the others alike
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("differ in size" in m and "Lower 'train_subsample' to about" in m for m in messages), messages
    suggested = int(next(m for m in messages if "adversary" in m).rsplit("about ", 1)[1].split(" ")[0])
    caplog.clear()
    equal = _small_pool_attack(census, suggested)
    with caplog.at_level("WARNING", logger="amulet.distribution_inference.attacks._populations"):
        equal.prepare_model_populations()
    assert equal.population_rows_["adv_1"] >= 0.9 * equal.population_rows_["adv_2"]
    assert not [r for r in caplog.records if "differ in size" in r.getMessage()]
