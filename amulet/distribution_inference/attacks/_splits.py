"""Victim / adversary data splits with controlled property ratios (Suri & Evans, 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from amulet.exceptions import InvalidParameterError

__all__ = ["DistributionSplits", "prepare_distribution_splits", "ratio_indices", "sample_with_ratio"]


@dataclass
class DistributionSplits:
    """The six loaders of a distribution inference experiment; each yields (x, y, z).

    The four training loaders hold *pools*: the victim's or the adversary's half of the training data,
    subsampled so that exactly ``ratio`` of the rows have the property. Each model of a population trains
    on its own random draw from its pool (see :func:`sample_with_ratio`). The two test loaders hold
    ``test_subsample`` rows with the property at ratio 1 and 2 respectively (queries for black-box attacks).
    """

    vic_trainloader_1: DataLoader
    vic_trainloader_2: DataLoader
    adv_trainloader_1: DataLoader
    adv_trainloader_2: DataLoader
    test_loader_1: DataLoader
    test_loader_2: DataLoader


def ratio_indices(mask: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """The largest subset of rows in which exactly ``ratio`` (up to rounding) have ``mask`` True."""
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    if ratio >= 1:
        return np.sort(yes)
    if ratio <= 0:
        return np.sort(no)
    n_yes = min(len(yes), int(len(no) * ratio / (1 - ratio)))
    n_no = min(len(no), round(n_yes * (1 - ratio) / ratio))
    return np.sort(np.r_[rng.choice(yes, n_yes, replace=False), rng.choice(no, n_no, replace=False)])


def sample_with_ratio(mask: np.ndarray, ratio: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` rows, ``round(ratio * size)`` of them with ``mask`` True (raises if there are not enough)."""
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    n_yes = round(ratio * size)
    if n_yes > len(yes) or size - n_yes > len(no):
        raise InvalidParameterError(
            f"Cannot draw {size} rows with property ratio {ratio}: only {len(yes)} rows with and {len(no)} without "
            "the property. Lower 'train_subsample' or 'test_subsample'."
        )
    return np.sort(np.r_[rng.choice(yes, n_yes, replace=False), rng.choice(no, size - n_yes, replace=False)])


def _dataset(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> TensorDataset:
    return TensorDataset(
        torch.as_tensor(np.asarray(x), dtype=torch.float32),
        torch.as_tensor(np.asarray(y), dtype=torch.long).reshape(-1),
        torch.as_tensor(np.asarray(z), dtype=torch.long).reshape(len(x), -1),
    )


def prepare_distribution_splits(
    x_train: np.ndarray,
    y_train: np.ndarray,
    z_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    z_test: np.ndarray,
    sensitive_columns: list[str],
    filter_column: str,
    ratio1: float,
    ratio2: float,
    train_subsample: int = 1100,
    test_subsample: int = 500,
    filter_value: int = 1,
    drop_values: dict[str, list[int]] | None = None,
    *,
    batch_size: int = 256,
    seed: int = 42,
) -> DistributionSplits:
    """Split the data into victim and adversary halves and build ratio-controlled pools and test sets.

    Args:
        x_train, y_train, z_train: Training features, labels and sensitive attributes (one column each).
        x_test, y_test, z_test: Test features, labels and sensitive attributes.
        sensitive_columns: Names of the columns of ``z``.
        filter_column: The column whose share is inferred (e.g. ``"sex"``).
        ratio1, ratio2: Share of rows with ``filter_column == filter_value`` in distribution 1 and 2, in [0, 1].
        train_subsample: Rows each population model trains on (checked to be drawable from each pool).
        test_subsample: Rows of each test loader.
        filter_value: The value of ``filter_column`` that has the property. Default 1.
        drop_values: Rows whose column takes one of these values are dropped first (e.g. ``{"race": [2]}``).
        batch_size: Batch size of the loaders (keyword-only).
        seed: Seed of the halving and of the ratio subsampling (keyword-only).

    Returns:
        A :class:`DistributionSplits`.
    """
    if filter_column not in sensitive_columns:
        raise InvalidParameterError(
            f"The 'filter_column' parameter of prepare_distribution_splits must be one of {sensitive_columns}. "
            f"Got {filter_column!r} instead."
        )
    for name, ratio in (("ratio1", ratio1), ("ratio2", ratio2)):
        if not 0 <= float(ratio) <= 1:
            raise InvalidParameterError(
                f"The {name!r} parameter of prepare_distribution_splits must be a float in the range [0, 1]. "
                f"Got {ratio!r} instead."
            )
    z_train = np.asarray(z_train).reshape(len(x_train), -1)
    z_test = np.asarray(z_test).reshape(len(x_test), -1)
    col = sensitive_columns.index(filter_column)
    rng = np.random.default_rng(seed)

    def keep_rows(z: np.ndarray) -> np.ndarray:
        keep = np.ones(len(z), dtype=bool)
        for name, values in (drop_values or {}).items():
            keep &= ~np.isin(z[:, sensitive_columns.index(name)], values)
        return keep

    def halves(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(n)
        return order[: len(order) // 2], order[len(order) // 2 :]

    train_rows = np.flatnonzero(keep_rows(z_train))
    test_rows = np.flatnonzero(keep_rows(z_test))
    vic_rows, adv_rows = (train_rows[h] for h in halves(np.arange(len(train_rows))))
    test_vic, test_adv = (test_rows[h] for h in halves(np.arange(len(test_rows))))

    def pool(rows: np.ndarray, ratio: float) -> DataLoader:
        mask = z_train[rows, col] == filter_value
        picked = rows[ratio_indices(mask, ratio, rng)]
        sample_with_ratio(z_train[picked, col] == filter_value, ratio, train_subsample, rng)  # drawable?
        return DataLoader(_dataset(x_train[picked], y_train[picked], z_train[picked]), batch_size=batch_size)

    def queries(ratio: float) -> DataLoader:
        rows = np.r_[test_vic, test_adv]
        picked = rows[sample_with_ratio(z_test[rows, col] == filter_value, ratio, test_subsample, rng)]
        return DataLoader(_dataset(x_test[picked], y_test[picked], z_test[picked]), batch_size=batch_size)

    return DistributionSplits(
        vic_trainloader_1=pool(vic_rows, ratio1),
        vic_trainloader_2=pool(vic_rows, ratio2),
        adv_trainloader_1=pool(adv_rows, ratio1),
        adv_trainloader_2=pool(adv_rows, ratio2),
        test_loader_1=queries(ratio1),
        test_loader_2=queries(ratio2),
    )
