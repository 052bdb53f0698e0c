"""The dataset registry is the one list of datasets: load_data, specs and the service read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from amulet.assess import load_spec
from amulet.assess._spec import BUILTIN_DATASETS
from amulet.datasets import (
    DATASET_SOURCES,
    AmuletDataset,
    DatasetInfo,
    dataset_names,
    datasets,
    get_dataset,
    register_dataset,
    unregister_dataset,
)
from amulet.exceptions import InvalidParameterError
from amulet.utils import DATASET_NAMES, load_data

BUILTINS = ["celeba", "census", "cifar10", "cifar100", "compas", "fmnist", "german", "lfw", "mnist", "utkface"]


def load_blobs(path: Path | str, *, seed: int = 0, rows: int = 40) -> AmuletDataset:
    """Two seeded Gaussian blobs split 3:1 (``path`` is not read: the data are generated)."""
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % 2
    x = (rng.normal(size=(rows, 3)) + 3 * y[:, None]).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    cut = 3 * rows // 4
    tensors = [(torch.from_numpy(x[s]), torch.from_numpy(y[s])) for s in (slice(None, cut), slice(cut, None))]
    return AmuletDataset(
        TensorDataset(*tensors[0]),
        TensorDataset(*tensors[1]),
        num_features=3,
        num_classes=2,
        modality="tabular",
        x_train=x[:cut],
        x_test=x[cut:],
        y_train=y[:cut],
        y_test=y[cut:],
        name="blobs",
    )


@pytest.fixture
def blobs() -> Iterator[DatasetInfo]:
    info = register_dataset(DatasetInfo("blobs", "tabular", "Two Gaussian blobs", load_blobs, options={"n": "rows"}))
    yield info
    unregister_dataset("blobs")


def test_the_builtins_are_listed_once_and_everything_reads_that_list():
    assert dataset_names() == BUILTINS
    assert list(DATASET_NAMES) == BUILTINS
    assert list(BUILTIN_DATASETS) == BUILTINS
    assert set(DATASET_SOURCES) == set(BUILTINS)


@pytest.mark.parametrize("info", datasets(), ids=lambda d: d.name)
def test_each_builtin_states_its_modality_as_its_sources_do(info: DatasetInfo):
    assert info.source == "builtin" and info.description
    assert info.modality == DATASET_SOURCES[info.name].modality
    assert info.seed in (None, "random_seed")


def test_lfw_is_tabular_as_its_loader_returns_it():
    # The service's list once called it an image dataset; the loader returns flat vectors.
    assert get_dataset("lfw").modality == "tabular"


def test_a_registered_dataset_loads_by_name_with_the_seed_under_its_own_keyword(blobs: DatasetInfo, tmp_path: Path):
    first = load_data(tmp_path, "blobs", exp_id=3)
    again = load_data(tmp_path, "blobs", seed=3)
    other = load_data(tmp_path, "blobs", seed=4)
    assert np.array_equal(first.x_train, again.x_train)
    assert not np.array_equal(first.x_train, other.x_train)
    assert len(blobs.load(tmp_path, seed=0, n=80).x_train) == 60  # the option reaches the loader as ``rows``
    assert load_spec({"dataset": {"name": "blobs"}, "risks": [{"risk": "evasion"}]}).dataset.name == "blobs"


def test_seed_and_exp_id_are_one_seed(blobs: DatasetInfo, tmp_path: Path):
    with pytest.raises(InvalidParameterError, match="two names of one seed"):
        load_data(tmp_path, "blobs", exp_id=1, seed=2)


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(InvalidParameterError, match=r"The 'dataset' parameter of load_data must be one of"):
        load_data(".", "nope")
    with pytest.raises(InvalidParameterError, match=r"census"):
        get_dataset("nope")


def test_registration_refuses_a_seed_keyword_the_loader_does_not_take_and_a_taken_name(blobs: DatasetInfo):
    with pytest.raises(InvalidParameterError, match=r"'random_seed'.*does not take.*'seed' here"):
        register_dataset(DatasetInfo("blobs2", "tabular", "", load_blobs, seed="random_seed"))
    with pytest.raises(InvalidParameterError, match="already registered"):
        register_dataset(DatasetInfo("census", "tabular", "", load_blobs))
