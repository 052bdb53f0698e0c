"""``load_data`` (one entry point for every built-in dataset, with subsampling) and ``stratified_split``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from amulet._validation import Interval, Options, check_param

if TYPE_CHECKING:
    from amulet.datasets import AmuletDataset

__all__ = ["DATASET_NAMES", "load_data", "stratified_split", "subsample_dataset"]

logger = logging.getLogger("amulet.datasets")

#: Names accepted by :func:`load_data`.
DATASET_NAMES = ("celeba", "census", "cifar10", "cifar100", "compas", "fmnist", "german", "lfw", "mnist", "utkface")


def _loader(dataset: str, exp_id: int, celeba_target: str, download: bool) -> Callable[[Path], AmuletDataset]:
    from amulet import datasets as ds

    loaders: dict[str, Callable[[Path], AmuletDataset]] = {
        "census": lambda p: ds.load_census(p, random_seed=exp_id, download=download),
        "compas": lambda p: ds.load_compas(p, random_seed=exp_id, download=download),
        "german": lambda p: ds.load_german(p, random_seed=exp_id, download=download),
        "fmnist": lambda p: ds.load_fmnist(p, download=download),
        "mnist": lambda p: ds.load_mnist(p, download=download),
        "cifar10": lambda p: ds.load_cifar10(p, download=download),
        "cifar100": lambda p: ds.load_cifar100(p, download=download),
        "lfw": lambda p: ds.load_lfw(p, random_seed=exp_id),
        "celeba": lambda p: ds.load_celeba(p, random_seed=exp_id, target_attribute=celeba_target),
        "utkface": lambda p: ds.load_utkface(p, random_seed=exp_id),
    }
    return loaders[dataset]


def _subset_dataset(dataset: Dataset, index: np.ndarray) -> Dataset:
    from amulet.datasets import TransformedTensorDataset

    idx = torch.as_tensor(index, dtype=torch.long)
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[idx] for t in dataset.tensors))
    if isinstance(dataset, TransformedTensorDataset):
        return TransformedTensorDataset(dataset.tensors[0][idx], dataset.tensors[1][idx], dataset.transform)
    return Subset(dataset, index.tolist())


def subsample_dataset(
    data: AmuletDataset, split: str, fraction: float, seed: int, *, owner: str = "subsample_dataset"
) -> AmuletDataset:
    """Keep a seeded ``fraction`` of the ``split`` (``"train"`` or ``"test"``) rows of ``data``.

    One index (sorted, so the original order is kept) is applied to the torch dataset and to every array of
    that split (``x_``, ``y_``, ``z_``, ``index_``), so they stay aligned.

    Raises:
        InvalidParameterError: (a ``ValueError``) when ``fraction`` keeps fewer than 2 rows, naming the
            parameter (``training_size`` or ``test_size`` of ``owner``) and the smallest fraction that works.
    """
    if fraction >= 1.0:
        return data
    torch_set = data.train_set if split == "train" else data.test_set
    n = len(torch_set)  # type: ignore[arg-type]
    k = int(fraction * n)
    if k < 2:
        from amulet.exceptions import InvalidParameterError

        name = "training_size" if split == "train" else "test_size"
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must keep at least 2 of the {n} {split} rows. Got {fraction!r}, "
            f"which keeps {k}; use at least {2 / n:.3g}."
        )
    index = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    changes: dict[str, Any] = {f"{split}_set": _subset_dataset(torch_set, index)}
    for prefix in ("x", "y", "z", "index"):
        array = getattr(data, f"{prefix}_{split}")
        if array is not None:
            if len(array) != n:
                raise ValueError(f"{prefix}_{split} has {len(array)} rows but {split}_set has {n}; cannot subsample.")
            changes[f"{prefix}_{split}"] = array[index]
    return dataclasses.replace(data, **changes)


def load_data(
    root: Path | str,
    dataset: str,
    training_size: float = 1.0,
    log: logging.Logger | None = None,
    exp_id: int = 0,
    celeba_target: str = "Smiling",
    test_size: float = 1.0,
    *,
    download: bool = False,
) -> AmuletDataset:
    """Load a built-in dataset by name, optionally keeping only a fraction of its train and test rows.

    The dataset's files are looked for in ``<root>/<dataset>``, then (upstream layout)
    ``<root>/data/<dataset>``, then the settings data directory, then its offline package source (see
    :mod:`amulet.datasets`).

    Args:
        root: Directory holding one folder per dataset.
        dataset: One of :data:`DATASET_NAMES`.
        training_size: Fraction of training rows kept, in (0, 1]; it must keep at least 2 rows.
        log: Logger for progress messages (default: the ``amulet.datasets`` logger).
        exp_id: Seed of the dataset's train/test split (for datasets that split) and of the subsampling.
        celeba_target: Target attribute for ``celeba``.
        test_size: Fraction of test rows kept, in (0, 1] (not the split ratio); it must keep at least 2 rows.
        download: Allow the canonical download when no local or offline source exists.

    Returns:
        The :class:`~amulet.datasets.AmuletDataset`; the same arguments give the same rows.

    Raises:
        ValueError: (``InvalidParameterError``) for an unknown dataset name, listing the known names, or a
            ``training_size``/``test_size`` that keeps fewer than 2 rows.
        DatasetUnavailableError: When the dataset has no source; the message names the install command.
    """
    check_param("load_data", "dataset", dataset, [Options(set(DATASET_NAMES))])
    check_param("load_data", "training_size", training_size, [Interval(float, 0, 1, closed="right")])
    check_param("load_data", "test_size", test_size, [Interval(float, 0, 1, closed="right")])
    check_param("load_data", "exp_id", exp_id, [Interval(int, 0, None)])
    log = log or logger
    root = Path(root).expanduser()
    path = root / dataset
    upstream_layout = root / "data" / dataset
    if not path.exists() and upstream_layout.exists():
        path = upstream_layout
    data = _loader(dataset, exp_id, celeba_target, download)(path)
    from amulet.utils._seeding import derive_seed

    data = subsample_dataset(
        data, "train", training_size, derive_seed(exp_id, "load_data", dataset, "train"), owner="load_data"
    )
    data = subsample_dataset(
        data, "test", test_size, derive_seed(exp_id, "load_data", dataset, "test"), owner="load_data"
    )
    log.info(
        "Loaded %s: %d train / %d test rows (training_size=%g, test_size=%g, exp_id=%d) from %s",
        dataset, len(data.train_set), len(data.test_set), training_size, test_size, exp_id, data.source,  # type: ignore[arg-type]
    )  # fmt: skip
    return data


def stratified_split(dataset: Dataset, split_ratio: float, seed: int = 42) -> tuple[Subset, Subset]:
    """Split a dataset of ``(x, y, ...)`` items into two stratified subsets.

    Args:
        dataset: Any map-style dataset whose items start with ``(x, y)`` (a ``TensorDataset`` is read
            without iterating).
        split_ratio: Fraction of the rows in the first subset, in (0, 1).
        seed: Seed of the split.

    Returns:
        ``(first, second)`` as ``torch.utils.data.Subset`` objects.
    """
    from sklearn.model_selection import train_test_split

    check_param("stratified_split", "split_ratio", split_ratio, [Interval(float, 0, 1, closed="neither")])
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) > 1:
        labels = torch.as_tensor(tensors[1]).reshape(len(tensors[1]), -1)[:, 0].numpy()
    else:
        labels = np.asarray([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]
    first, second = train_test_split(
        np.arange(len(labels)), train_size=split_ratio, stratify=labels, random_state=int(seed)
    )
    return Subset(dataset, np.sort(first).tolist()), Subset(dataset, np.sort(second).tolist())
