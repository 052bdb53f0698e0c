"""``amulet.utils.load_data`` (subsampling keeps tensors and arrays aligned) and ``stratified_split``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from amulet.datasets import _sources
from amulet.exceptions import InvalidParameterError
from amulet.utils import load_data, stratified_split


def _assert_aligned(data):
    for split in ("train", "test"):
        x_t, y_t = getattr(data, f"{split}_set").tensors
        # the tensors are float32, the arrays as upstream returns them (float64 for the built-in tables)
        assert torch.equal(x_t, torch.from_numpy(getattr(data, f"x_{split}")).float())
        assert torch.equal(y_t, torch.from_numpy(getattr(data, f"y_{split}")))
        for name in ("z", "index"):
            array = getattr(data, f"{name}_{split}")
            assert array is None or len(array) == len(x_t)


def test_fmnist_small_fixture_is_subsampled_and_aligned(fmnist_small):
    assert len(fmnist_small.train_set) == 6000 and len(fmnist_small.test_set) == 2000
    assert fmnist_small.x_train.shape == (6000, 1, 28, 28)
    _assert_aligned(fmnist_small)
    assert len(np.unique(fmnist_small.y_train)) == 10


def test_census_subsampling_keeps_x_y_z_and_tensors_aligned(census, amulet_home):
    small = load_data(str(amulet_home / "data"), "census", training_size=0.25, test_size=0.5, exp_id=0)
    assert len(small.train_set) == int(0.25 * len(census.train_set))
    assert len(small.test_set) == int(0.5 * len(census.test_set))
    _assert_aligned(small)
    # Same exp_id -> same split as the full load; the kept rows carry their own x, y and z.
    position = {row: i for i, row in enumerate(census.index_train)}
    rows = np.array([position[r] for r in small.index_train])
    np.testing.assert_array_equal(small.x_train, census.x_train[rows])
    np.testing.assert_array_equal(small.y_train, census.y_train[rows])
    np.testing.assert_array_equal(small.z_train, census.z_train[rows])
    again = load_data(str(amulet_home / "data"), "census", training_size=0.25, test_size=0.5, exp_id=0)
    np.testing.assert_array_equal(again.index_train, small.index_train)
    np.testing.assert_array_equal(again.index_test, small.index_test)


def test_different_exp_id_gives_different_rows(amulet_home):
    a = load_data(str(amulet_home / "data"), "german", training_size=0.5, exp_id=1)
    b = load_data(str(amulet_home / "data"), "german", training_size=0.5, exp_id=2)
    assert len(a.train_set) == len(b.train_set) == 250
    assert not np.array_equal(a.index_train, b.index_train)
    _assert_aligned(a)


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match=r"'dataset' parameter of load_data must be one of.*'census'.*'fmnist'"):
        load_data(tmp_path, "imagenet")


@pytest.mark.parametrize(("name", "value"), [("training_size", 0.0), ("training_size", 1.5), ("test_size", -0.1)])
def test_bad_fractions_are_rejected(tmp_path, name, value):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of load_data"):
        load_data(tmp_path, "german", **{name: value})


@pytest.mark.parametrize(("name", "value", "kept"), [("test_size", 0.002, 1), ("training_size", 0.001, 0)])
def test_sizes_that_keep_fewer_than_2_rows_are_rejected(tmp_path, name, value, kept):
    # german: 500 train and 500 test rows; 0.002 of 500 keeps 1 row, 0.001 keeps none
    with pytest.raises(
        ValueError, match=f"'{name}' parameter of load_data must keep at least 2 of the 500 .*keeps {kept}"
    ):
        load_data(tmp_path, "german", **{name: value})
    smallest = load_data(tmp_path, "german", **{name: 0.004})  # keeps 2 rows: accepted
    assert len(smallest.y_test if name == "test_size" else smallest.y_train) == 2


@pytest.mark.parametrize("layout", ["<root>/german", "<root>/data/german"])
def test_local_folder_under_root_is_found_in_both_layouts(tmp_path, layout):
    folder = tmp_path / layout.replace("<root>/", "")
    folder.mkdir(parents=True)
    located = _sources.locate_offline(_sources.DATASET_SOURCES["german"].offline)
    shutil.copy(located[0] / "german.data", folder / "german.data")
    data = load_data(tmp_path, "german")
    assert data.source == f"local cache {folder}"


def test_stratified_split_keeps_class_proportions():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    dataset = TensorDataset(torch.arange(100).float().unsqueeze(1), y)
    first, second = stratified_split(dataset, 0.7, seed=3)
    assert isinstance(first, Subset) and len(first) == 70 and len(second) == 30
    assert set(first.indices).isdisjoint(second.indices) and len(set(first.indices) | set(second.indices)) == 100
    assert torch.bincount(y[first.indices]).tolist() == [42, 21, 7]
    again, _ = stratified_split(dataset, 0.7, seed=3)
    assert again.indices == first.indices
    other, _ = stratified_split(Subset(dataset, list(range(100))), 0.7, seed=4)  # no .tensors: items are read
    assert torch.bincount(y[other.indices]).tolist() == [42, 21, 7] and other.indices != first.indices
    with pytest.raises(InvalidParameterError, match="'split_ratio' parameter of stratified_split"):
        stratified_split(dataset, 1.0)
