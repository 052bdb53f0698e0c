"""Reconstruction metrics on tables: finite, interpretable, and pointing the right way on real census models."""

from __future__ import annotations

import logging
import math
import tempfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from amulet import registry
from amulet.data_reconstruction import TabularLayout
from amulet.data_reconstruction._layout import project_to_capped_simplex, project_to_simplex
from amulet.data_reconstruction.attacks import FredriksonCCS2015
from amulet.data_reconstruction.metrics import evaluate_similarity
from amulet.datasets._sources import DATASET_SOURCES, locate_offline
from amulet.datasets._tabular import read_adult
from amulet.exceptions import InvalidParameterError
from amulet.models import LinearNet
from amulet.progress import SilentProgress
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.utils import TensorData, TrainConfig


def test_census_layout_is_read_from_the_dataset(census) -> None:
    layout = TabularLayout.from_dataset(census)
    assert layout.known and layout.n_features == census.num_features
    assert set(layout.categorical) == set(census.preprocessing["categorical"])
    names = census.feature_names
    assert [names[i] for i in layout.numeric] == list(census.preprocessing["numeric"])
    assert all(names[i].startswith("workclass=") for i in layout.categorical["workclass"])
    # upstream's encoding drops each block's first category: the layout knows it is the all-zero pattern
    assert layout.dropped == {c: info["categories"][0] for c, info in census.preprocessing["categorical"].items()}
    assert (
        len(layout.categorical["workclass"]) == len(census.preprocessing["categorical"]["workclass"]["categories"]) - 1
    )
    assert "6 without their first category" in layout.describe()


def test_census_rows_decode_to_their_raw_categories_including_the_dropped_first_one(census) -> None:
    raw = read_adult(locate_offline(DATASET_SOURCES["census"].offline)[0]).loc[census.index_train[:3000]]
    layout = TabularLayout.from_dataset(census)
    x = torch.from_numpy(census.x_train[:3000]).float()
    for column, info in census.preprocessing["categorical"].items():
        decoded = [info["categories"][int(i)] for i in layout.category_scores(x, column).argmax(-1)]
        assert decoded == raw[column].fillna("Unknown").astype(str).tolist(), column
    first = (raw["workclass"].fillna("Unknown") == "Federal-gov").to_numpy()  # dropped: an all-zero block
    assert first.any() and float(x[torch.tensor(first)][:, list(layout.categorical["workclass"])].abs().sum()) == 0


def test_capped_simplex_projection_is_the_closest_point_of_the_dropped_first_block_set() -> None:
    v = torch.tensor([[0.2, 0.1, -0.5], [0.9, 0.8, 0.0], [-1.0, -2.0, -0.1], [0.5, 0.5, 0.0]])
    p = project_to_capped_simplex(v)
    assert torch.allclose(p[0], torch.tensor([0.2, 0.1, 0.0]))  # inside once clamped: only the clamp
    assert torch.allclose(p[1], torch.tensor([0.55, 0.45, 0.0]))  # the sum constraint is active
    assert torch.equal(p[2], torch.zeros(3))  # all zeros: the dropped first category
    assert torch.allclose(p[3], v[3])
    # no point of {x >= 0, sum <= 1} is closer (checked against many random feasible points)
    feasible = torch.distributions.Dirichlet(torch.ones(4)).sample((20000,))[:, 1:]
    for row, proj in zip(v, p):
        assert float(((proj - row) ** 2).sum()) <= float(((feasible - row) ** 2).sum(-1).min()) + 1e-6
    layout = TabularLayout(4, numeric=(0,), categorical={"c": (1, 2, 3)}, dropped={"c": "first"})
    x = torch.tensor([[7.0, 0.9, 0.8, 0.0]])
    assert torch.allclose(layout.project(x), torch.tensor([[7.0, 0.55, 0.45, 0.0]]))
    assert torch.allclose(
        layout.category_scores(torch.tensor([0.0, 0.1, 0.2, 0.0]), "c"), torch.tensor([0.7, 0.1, 0.2, 0.0])
    )
    with pytest.raises(InvalidParameterError, match="'dropped' categories"):
        TabularLayout(4, numeric=(0,), categorical={"c": (1, 2, 3)}, dropped={"d": "first"})


def test_similarity_credits_the_dropped_first_category_when_a_block_is_all_zeros() -> None:
    # columns: colour=blue, colour=green (colour=red dropped: all zeros), weight (numeric)
    x = torch.tensor([[0, 0, 0.2], [0, 0, 0.4], [1, 0, 0.6], [0, 1, 1.0], [0, 1, 0.8]], dtype=torch.float32)
    y = torch.tensor([0, 0, 0, 1, 1])
    layout = TabularLayout.from_encoding(
        ["colour=blue", "colour=green", "weight"], {"colour": ["red", "blue", "green"]}, ["weight"],
        dropped={"colour": "red"},
    )  # fmt: skip
    assert layout.categorical == {"colour": (0, 1)} and layout.categories == {"colour": ("blue", "green")}
    recs = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.9, 0.0, 0.9])]
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=2), recs, (3,), 2, "cpu", layout=layout)
    # class 0 is mostly red (the dropped category), which its reconstruction's near-zero block names; class 1 is
    # green, and its reconstruction names blue
    assert res["class_category_accuracy"] == {0: 1.0, 1: 0.0}
    assert res["category_accuracy_prior"] == 0.5  # the overall mode (red) is class 0's only


def test_dataset_without_encoding_is_all_numeric_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    class Bare:
        name = "bare"
        num_features = 4

    with caplog.at_level(logging.WARNING, logger="amulet.data_reconstruction"):
        layout = TabularLayout.from_dataset(Bare())
    assert not layout.known and layout.numeric == (0, 1, 2, 3) and not layout.categorical
    assert "treated as numeric" in caplog.text and "all treated as numeric" in layout.describe()


def test_simplex_projection_and_bad_layout() -> None:
    v = torch.tensor([[3.0, 1.0, -2.0], [0.0, 0.0, 0.0], [0.4, 0.3, 0.3]])
    p = project_to_simplex(v)
    assert torch.allclose(p.sum(-1), torch.ones(3)) and bool((p >= 0).all())
    assert p[0].tolist() == [1.0, 0.0, 0.0] and torch.allclose(p[1], torch.full((3,), 1 / 3))
    assert torch.allclose(p[2], v[2])  # already on the simplex
    with pytest.raises(InvalidParameterError, match="exactly once"):
        TabularLayout(3, numeric=(0,), categorical={"a": (0, 1)})


def test_tabular_metrics_by_hand_with_ties() -> None:
    # columns: colour=red, colour=blue, size=S, size=M, size=L, weight (numeric)
    x = torch.tensor(
        [[1, 0, 1, 0, 0, 0.2], [1, 0, 0, 1, 0, 0.4], [1, 0, 1, 0, 0, 0.6], [0, 1, 0, 0, 1, 1.0]], dtype=torch.float32
    )
    y = torch.tensor([0, 0, 0, 1])
    layout = TabularLayout(6, numeric=(5,), categorical={"colour": (0, 1), "size": (2, 3, 4)})
    recs = [torch.tensor([0.9, 0.1, 0.5, 0.5, 0.0, 0.4]), torch.tensor([0.5, 0.5, 0.0, 1.0, 0.0, 0.0])]
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=3), recs, (6,), 2, "cpu", layout=layout)
    # class 0: colour=red recovered (1), size=S tied with M (1/2); class 1: colour tie (1/2), size=L missed (0)
    assert res["class_category_accuracy"] == {0: 0.75, 1: 0.25}
    assert res["mean_category_accuracy"] == 0.5
    assert res["block_accuracy"] == {"colour": 0.75, "size": 0.25}
    # the overall modes (red, S) are class 0's but not class 1's
    assert res["category_accuracy_prior"] == 0.5
    assert res["class_numeric_mse"][1] == pytest.approx(1.0) and res["class_numeric_mse"][0] == pytest.approx(0.0)
    assert res["modality"] == "tabular" and "mean_ssim" not in res


def test_census_inversion_reports_finite_tabular_metrics(census, census_model) -> None:
    model, data = census_model
    layout = TabularLayout.from_dataset(census)
    recs = FredriksonCCS2015(
        model, (census.num_features,), 2, "cpu", 100, 50, 0.0, 100.0, clip_range=(0.0, 1.0), layout=layout
    ).attack()
    for r in recs:  # every one-hot block of a reconstruction is a distribution over its categories
        for name, block in layout.categorical.items():
            assert name in layout.dropped and bool((r[list(block)] >= 0).all())
            assert float(r[list(block)].sum()) <= 1.0 + 1e-5  # the rest is the dropped first category's share
            assert float(layout.category_scores(r, name).sum()) == pytest.approx(1.0, abs=1e-5)
    res = evaluate_similarity(data.loader(500), recs, (census.num_features,), 2, "cpu", layout=layout)
    values = [res["mean_mse"], res["mean_numeric_mse"], res["mean_category_accuracy"], res["category_accuracy_prior"]]
    values += [*res["class_category_accuracy"].values(), *res["block_accuracy"].values()]
    assert all(math.isfinite(v) for v in values), res
    assert 0 <= res["mean_category_accuracy"] <= 1 and 0 <= res["category_accuracy_prior"] <= 1
    assert set(res["block_accuracy"]) == set(layout.categorical)
    assert res["mean_mse"] >= 0 and res["mean_numeric_mse"] >= 0
    if float(data.x.min()) >= 0 and float(data.x.max()) <= 1:  # min-max scaled tables: squared errors <= 1
        assert res["mean_mse"] <= 1 and res["mean_numeric_mse"] <= 1


def _cell(model: torch.nn.Module, data: TensorData, dataset) -> CellContext:
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
        input_shape=(int(data.x.shape[1]),),
        clip_range=None,
    )


def test_headline_direction_overfitted_target_is_more_susceptible_than_an_untrained_one(census) -> None:
    """An MLP memorising 20 census rows (100 epochs) gives reconstructions that recover more of each class's
    typical categories (headline ``similarity``, higher = more susceptible) and lie closer to the class means
    (``mse``, lower = more susceptible) than an untrained MLP of the same architecture."""
    info = registry.get_attack("fredrikson_ccs_2015")
    risk = registry.get_risk("data_reconstruction")
    assert risk.headline_metrics[0].key == "similarity" and risk.metric("similarity").higher_is_riskier
    assert not risk.metric("mse").higher_is_riskier
    n = census.num_features
    gaps = []
    for seed in range(3):
        rows = np.random.default_rng(seed).permutation(len(census.x_train))[:20]
        data = TensorData.from_numpy(census.x_train[rows], census.y_train[rows])
        vulnerable = Recipe(TrainConfig(epochs=100, batch_size=20, lr=0.01)).train(
            lambda: LinearNet(n, 2, [64, 32], batch_norm=False), data, seed=seed
        )
        torch.manual_seed(seed)
        weak = LinearNet(n, 2, [64, 32], batch_norm=False)
        strong_out = info.run(_cell(vulnerable, data, census), info.params())
        weak_out = info.run(_cell(weak, data, census), info.params())
        for out in (strong_out, weak_out):
            assert set(out) == {"similarity", "mse", "numeric_mse", "category_accuracy_prior"}
            assert all(math.isfinite(v) for v in out.values()), out
            assert 0 <= out["similarity"] <= 1
        assert strong_out["similarity"] > weak_out["similarity"], (seed, strong_out, weak_out)
        assert strong_out["mse"] < weak_out["mse"], (seed, strong_out, weak_out)
        gaps.append(strong_out["similarity"] - weak_out["similarity"])
    assert np.mean(gaps) >= 0.1, gaps


def test_adapter_without_encoding_measures_mse_and_no_similarity(census, census_model) -> None:
    import dataclasses

    model, data = census_model
    bare = dataclasses.replace(census, feature_names=None, preprocessing=None)
    info = registry.get_attack("fredrikson_ccs_2015")
    out = info.run(_cell(model, data, bare), info.params(alpha=20))
    assert math.isfinite(out["mse"]) and math.isfinite(out["numeric_mse"]) and math.isnan(out["similarity"])


def test_ssim_is_finite_for_constant_images() -> None:
    x = torch.full((4, 1, 8, 8), 0.5)
    y = torch.tensor([0, 0, 1, 1])
    recs = [torch.full((1, 8, 8), 0.5), torch.zeros(1, 8, 8)]
    res = evaluate_similarity(DataLoader(TensorDataset(x, y), batch_size=2), recs, (1, 8, 8), 2, "cpu")
    assert res["modality"] == "image" and all(math.isfinite(v) for v in res["class_ssim"].values())
    assert res["class_ssim"][0] == pytest.approx(1.0)
    with pytest.raises(InvalidParameterError, match="'data_range'"):
        evaluate_similarity(DataLoader(TensorDataset(x, y)), recs, (1, 8, 8), 2, "cpu", data_range=0.0)
    with pytest.raises(InvalidParameterError, match="'reverse_data'"):
        evaluate_similarity(
            DataLoader(TensorDataset(x, y)), [recs[0], torch.full((1, 8, 8), math.nan)], (1, 8, 8), 2, "cpu"
        )
