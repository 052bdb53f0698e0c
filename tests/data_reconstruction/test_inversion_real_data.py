"""Model inversion on real fmnist and census models, and the registered adapter."""

from __future__ import annotations

import math
import tempfile

import pytest
import torch

from amulet import registry
from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.models import SimpleCNN
from amulet.progress import SilentProgress
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.utils import TensorData, TrainConfig

from .conftest import class_means


def _own_class_wins(recs: list[torch.Tensor], means: torch.Tensor) -> int:
    stacked = torch.stack([r.reshape(means.shape[1:]) for r in recs])
    mse = ((stacked[:, None] - means[None]) ** 2).flatten(2).mean(2)  # reconstruction x class mean
    return int((mse.argmin(1) == torch.arange(len(recs))).sum())


def _inversion_check(model: torch.nn.Module, data: TensorData) -> None:
    attack = FredriksonCCS2015(model, (1, 28, 28), 10, "cpu", 100, 50, 0.0, 100.0, clip_range=(0.0, 1.0))
    recs = attack.attack()
    assert len(recs) == 10 and all(tuple(r.shape) == (1, 28, 28) for r in recs)
    assert max(attack.costs_) < 0.05
    wins = _own_class_wins(recs, class_means(data, 10))
    assert wins >= 6, f"only {wins} of 10 reconstructions are closest to their own class mean"
    res = evaluate_similarity(data.loader(500), recs, (1, 28, 28), 10, "cpu")
    assert math.isfinite(res["mean_mse"]) and math.isfinite(res["mean_ssim"])
    assert all(-1.0 <= v <= 1.0 for v in res["class_ssim"].values())


def test_fmnist_inversion_reconstructs_own_class(fmnist_mlp, fmnist_train) -> None:
    _inversion_check(fmnist_mlp, fmnist_train)


@pytest.mark.slow
def test_fmnist_cnn_inversion_reconstructs_own_class(fmnist_train) -> None:
    model = Recipe(TrainConfig(epochs=3, batch_size=128)).train(
        lambda: SimpleCNN([(12, 5), (24, 5)], [256], num_classes=10), fmnist_train, seed=0
    )
    _inversion_check(model, fmnist_train)


def test_census_inversion_runs_mse_only(census_model) -> None:
    model, data = census_model
    n_features = data.x.shape[1]
    attack = FredriksonCCS2015(model, (n_features,), 2, "cpu", 100, 20, 0.001, 1.0)
    recs = attack.attack()
    assert [tuple(r.shape) for r in recs] == [(n_features,), (n_features,)]
    with torch.no_grad():
        assert [int(model(r[None]).argmax()) for r in recs] == [0, 1]
    res = evaluate_similarity(data.loader(7), recs, (n_features,), 2, "cpu")
    assert math.isfinite(res["mean_mse"]) and all(math.isfinite(v) for v in res["class_mse"].values())
    # no layout given: every column numeric, no SSIM (not defined for tables)
    assert res["modality"] == "tabular" and "mean_ssim" not in res
    assert res["mean_numeric_mse"] == pytest.approx(res["mean_mse"]) and "mean_category_accuracy" not in res


def _cell(model, data: TensorData, dataset, shape, clip) -> CellContext:
    return CellContext(
        target=model,
        model_factory=lambda: model,
        recipe=Recipe(TrainConfig()),
        dataset=dataset,
        member=data,
        adversary=data,
        test=data,
        seed=0,
        device=torch.device("cpu"),
        cache_dir=tempfile.mkdtemp(prefix="amulet-p3-"),
        progress=SilentProgress(),
        input_shape=shape,
        clip_range=clip,
    )


def test_adapter_image_and_tabular(fmnist_mlp, fmnist_train, fmnist_small, census_model, census) -> None:
    info = registry.get_attack("fredrikson_ccs_2015")
    assert info.risk == "data_reconstruction" and info.cls is FredriksonCCS2015
    params = info.params(alpha=30)
    image = info.run(_cell(fmnist_mlp, fmnist_train, fmnist_small, (1, 28, 28), (0.0, 1.0)), params)
    assert set(image) == {"similarity", "mse"} and all(math.isfinite(v) for v in image.values())
    assert -1 <= image["similarity"] <= 1
    model, data = census_model
    tabular = info.run(_cell(model, data, census, (data.x.shape[1],), None), params)
    assert all(math.isfinite(v) for v in tabular.values()) and 0 <= tabular["similarity"] <= 1
