"""OutlierRemoval removes the LOWEST-valued points, on 1-channel images with BatchNorm and a last batch of one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.models import LinearNet, SimpleCNN
from amulet.poisoning.defenses import OutlierRemoval, lowest_value_split, remove_low_value_points
from amulet.utils import TensorData, TrainConfig, get_accuracy, seeded_init


def _flip(data: TensorData, fraction: float, num_classes: int, seed: int) -> tuple[TensorData, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n_flip = int(fraction * len(data))
    flipped = torch.randperm(len(data), generator=gen)[:n_flip]
    y = data.y.clone()
    y[flipped] = (y[flipped] + torch.randint(1, num_classes, (n_flip,), generator=gen)) % num_classes
    return TensorData(data.x, y), flipped


def test_fmnist_cnn_with_batchnorm_and_a_last_batch_of_one(fmnist_tensors):
    train, test = fmnist_tensors
    train = train.subset(torch.arange(1001))  # batches of 100: the last one has a single image
    noisy, flipped = _flip(train, 0.1, 10, seed=0)
    model = seeded_init(lambda: SimpleCNN([(8, 3)], [32], num_classes=10, batch_norm=True), 0)
    defense = OutlierRemoval(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=2e-3),
        noisy.loader(100, shuffle=True, seed=0),
        test.subset(torch.arange(500)).loader(100),
        "cpu",
        percent=10,
        epochs=4,
        batch_size=100,
    )
    robust = defense.train_robust()
    assert len(defense.removed_indices_) == 100 and len(defense.kept_indices_) == 901
    assert defense.shapley_values_.shape == (1001,)
    # The removed points are the lowest-valued ones (upstream 0.5.0 removed the most valuable).
    assert (
        defense.shapley_values_[defense.removed_indices_].max() <= defense.shapley_values_[defense.kept_indices_].min()
    )
    hit_rate = len(set(defense.removed_indices_.tolist()) & set(flipped.tolist())) / len(defense.removed_indices_)
    assert hit_rate > 0.4, hit_rate  # 10% of the rows are mislabelled: removal is strongly enriched in them
    assert get_accuracy(robust, test.loader(1000), "cpu") > 50


def test_recipe_stage_drops_the_lowest_valued_census_rows(census_tensors):
    member, _, _ = census_tensors
    noisy, flipped = _flip(member.subset(torch.arange(2000)), 0.1, 2, seed=1)
    kept = remove_low_value_points(
        lambda: LinearNet(member.x.shape[1], 2, hidden_layer_sizes=[32]),
        noisy,
        config=TrainConfig(epochs=3),
        seed=0,
        percent=10,
    )
    assert len(kept) == 1800
    remaining_flipped = int(torch.isin(flipped, _row_ids(noisy, kept)).sum())
    assert remaining_flipped < 0.75 * len(flipped), remaining_flipped


def _row_ids(full: TensorData, part: TensorData) -> torch.Tensor:
    """Indices in ``full`` of the rows of ``part`` (rows are kept in order by the stage)."""
    ids, j = [], 0
    for i in range(len(full)):
        if j < len(part) and torch.equal(full.x[i], part.x[j]) and full.y[i] == part.y[j]:
            ids.append(i)
            j += 1
    assert j == len(part)
    return torch.tensor(ids)


def test_percent_zero_keeps_everything_and_bad_percent_is_named_at_construction():
    assert lowest_value_split(torch.tensor([3.0, 1.0, 2.0, 0.0]), 0)[1].tolist() == [0, 1, 2, 3]
    model = nn.Linear(2, 2)
    loader = TensorData(torch.rand(4, 2), torch.zeros(4, dtype=torch.long)).loader(2)
    with pytest.raises(InvalidParameterError, match="'percent' parameter of OutlierRemoval") as error:
        OutlierRemoval(
            model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), 0.1), loader, loader, "cpu", percent=100
        )
    assert isinstance(error.value, ValueError)
    assert "a float in the range [0, 100)" in str(error.value)


def test_all_tied_values_remove_nothing():
    removed, kept = lowest_value_split(torch.full((10,), 0.1, dtype=torch.float64), 30)
    assert removed.tolist() == [] and kept.tolist() == list(range(10))
    removed, kept = lowest_value_split(torch.tensor([0.1] * 9 + [0.2]), 30)  # not all tied: ties by index
    assert removed.tolist() == [0, 1, 2]


def test_census_all_tied_shapley_values_keep_every_row_and_retrain_on_a_tensor_dataset(census_tensors):
    member, _, test = census_tensors
    # Training and validation rows of one class: every KNN-Shapley value is 1/N, so no row ranks below another.
    train = member.subset(torch.nonzero(member.y == 0).reshape(-1)[:300])
    valid = test.subset(torch.nonzero(test.y == 0).reshape(-1)[:100])
    loaders = []

    def recording_train(model, loader, criterion, optimizer, epochs, device):
        loaders.append(loader)
        return model

    model = seeded_init(lambda: LinearNet(member.x.shape[1], 2, hidden_layer_sizes=[16]), 0)
    defense = OutlierRemoval(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        train.loader(64),
        valid.loader(64),
        "cpu",
        train_function=recording_train,
        percent=20,
        epochs=1,
    )
    defense.train_robust()
    values = torch.as_tensor(defense.shapley_values_)
    # One class everywhere: every value is 1/N in exact arithmetic (float rounding aside).
    assert float(values.max() - values.min()) <= 1e-12 * float(values.abs().max()), values
    assert float(values[0]) == pytest.approx(1 / 300)
    assert len(defense.removed_indices_) == 0 and len(defense.kept_indices_) == 300
    retrain = loaders[-1]
    assert type(retrain.dataset) is torch.utils.data.TensorDataset
    x, y = retrain.dataset.tensors
    assert len(x) == 300 and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x, train.x) and torch.equal(y, train.y)


def test_retraining_data_is_the_kept_rows_as_a_tensor_dataset(census_tensors):
    member, _, test = census_tensors
    train, valid = member.subset(torch.arange(400)), test.subset(torch.arange(200))
    loaders = []

    def recording_train(model, loader, criterion, optimizer, epochs, device):
        loaders.append(loader)
        return model

    model = seeded_init(lambda: LinearNet(member.x.shape[1], 2, hidden_layer_sizes=[16]), 0)
    defense = OutlierRemoval(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        torch.utils.data.DataLoader(train.dataset(with_z=True), batch_size=64),  # (x, y, z) batches
        valid.loader(64),
        "cpu",
        train_function=recording_train,
        percent=10,
        epochs=1,
    )
    defense.train_robust()
    assert len(defense.kept_indices_) == 360
    dataset = loaders[-1].dataset
    assert type(dataset) is torch.utils.data.TensorDataset and len(dataset.tensors) == 2  # (x, y), as upstream
    assert torch.equal(dataset.tensors[0], train.x[defense.kept_indices_])
    assert torch.equal(dataset.tensors[1], train.y[defense.kept_indices_])


def test_defenses_all_lists_defenses_only_and_helpers_stay_importable():
    import amulet.poisoning.defenses as defenses

    assert defenses.__all__ == ["OutlierRemoval"]
    from amulet.poisoning.defenses import PoisoningDefense, knn_shapley  # noqa: F401
