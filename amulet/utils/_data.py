"""``load_data`` (one entry point for every built-in dataset, with subsampling) and ``stratified_split``."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from amulet._validation import Interval, Options, check_param
from amulet.datasets import AmuletDataset, TransformedTensorDataset, dataset_names, datasets, get_dataset
from amulet.exceptions import InvalidParameterError
from amulet.utils._seeding import derive_seed

__all__ = ["DATASET_NAMES", "load_data", "stratified_split", "subsample_dataset"]

logger = logging.getLogger("amulet.datasets")

#: The built-in datasets' names (those :func:`load_data` accepts are :func:`amulet.datasets.dataset_names`,
#: which also lists datasets registered since).
DATASET_NAMES = tuple(d.name for d in datasets() if d.source == "builtin")


def _subset_dataset(dataset: Dataset, index: np.ndarray) -> Dataset:
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
    seed: int | None = None,
) -> AmuletDataset:
    """Load a built-in dataset by name, optionally keeping only a fraction of its train and test rows.

    The dataset's files are looked for in ``<root>/<dataset>``, then (upstream layout)
    ``<root>/data/<dataset>``, then the settings data directory, then its offline package source (see
    :mod:`amulet.datasets`).

    Args:
        root: Directory holding one folder per dataset.
        dataset: A registered dataset (:func:`amulet.datasets.dataset_names`; the built-ins are
            :data:`DATASET_NAMES`).
        training_size: Fraction of training rows kept, in (0, 1]; it must keep at least 2 rows.
        log: Logger for progress messages (default: the ``amulet.datasets`` logger).
        exp_id: Seed of the dataset's train/test split (for datasets that split) and of the subsampling
            (upstream's name; ``seed`` is the same seed under the name new code uses).
        celeba_target: Target attribute for ``celeba``.
        test_size: Fraction of test rows kept, in (0, 1] (not the split ratio); it must keep at least 2 rows.
        download: Allow the canonical download when no local or offline source exists.
        seed: Keyword-only alias of ``exp_id``; give one of the two, or both equal.

    Returns:
        The :class:`~amulet.datasets.AmuletDataset`; the same arguments give the same rows.

    Raises:
        ValueError: (``InvalidParameterError``) for an unknown dataset name, listing the known names, or a
            ``training_size``/``test_size`` that keeps fewer than 2 rows.
        DatasetUnavailableError: When the dataset has no source; the message names the install command.
    """
    if seed is not None:
        check_param("load_data", "seed", seed, [Interval(int, 0, None)])
        if exp_id not in (0, seed):
            raise InvalidParameterError(
                f"load_data got seed={seed!r} and exp_id={exp_id!r}: they are two names of one seed; give one."
            )
        exp_id = seed
    check_param("load_data", "dataset", dataset, [Options(set(dataset_names()))])
    check_param("load_data", "training_size", training_size, [Interval(float, 0, 1, closed="right")])
    check_param("load_data", "test_size", test_size, [Interval(float, 0, 1, closed="right")])
    check_param("load_data", "exp_id", exp_id, [Interval(int, 0, None)])
    log = log or logger
    root = Path(root).expanduser()
    path = root / dataset
    upstream_layout = root / "data" / dataset
    if not path.exists() and upstream_layout.exists():
        path = upstream_layout
    data = get_dataset(dataset).load(path, seed=exp_id, download=download, celeba_target=celeba_target)
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
    from sklearn.model_selection import train_test_split  # lazy: scikit-learn costs about a second to import

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
