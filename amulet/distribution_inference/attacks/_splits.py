"""Target / adversary data splits with controlled property ratios (Suri & Evans, 2022), as upstream Amulet 0.6.

The training and test arrays are each halved (stratified on the label and every sensitive column) into a
*target* half and an *adversary* half. From each half, :func:`heuristic_sample` draws a set whose share of rows
with the property (``filter_column == filter_value``) is as close as ``n_tries`` random draws get to the
requested ratio, with ``test_subsample`` / ``train_subsample`` rows of label 1 and ``class_imbalance`` times as
many rows of label 0 (the class-balanced sampling of Suri & Evans' code).

Unlike upstream, every random draw comes from a NumPy generator seeded with ``seed`` (upstream draws from the
global NumPy state, so its splits change from call to call unless the caller seeds it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from amulet._validation import Interval, check_param
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError

__all__ = [
    "DistributionSplits",
    "heuristic_sample",
    "prepare_distribution_splits",
    "ratio_indices",
    "sample_with_ratio",
]


@dataclass
class DistributionSplits:
    """The six loaders of a distribution inference experiment (from :func:`prepare_distribution_splits`).

    Every loader yields ``(x, y)`` batches. The four training loaders hold one draw each from the target's or
    the adversary's half at ratio 1 or 2 (shuffled, last partial batch dropped, as upstream); the two test
    loaders hold the adversary's and the target's test draws at ratio 1 and 2, concatenated in that order.

    ``vic_trainloader_1`` / ``vic_trainloader_2`` are deprecated aliases of the target loaders (the names before
    upstream renamed victim to target).
    """

    target_trainloader_1: DataLoader
    target_trainloader_2: DataLoader
    adv_trainloader_1: DataLoader
    adv_trainloader_2: DataLoader
    test_loader_1: DataLoader
    test_loader_2: DataLoader

    @property
    def vic_trainloader_1(self) -> DataLoader:
        """Deprecated: use ``target_trainloader_1``."""
        warnings.warn("vic_trainloader_1 is deprecated; use target_trainloader_1.", DeprecationWarning, stacklevel=2)
        return self.target_trainloader_1

    @property
    def vic_trainloader_2(self) -> DataLoader:
        """Deprecated: use ``target_trainloader_2``."""
        warnings.warn("vic_trainloader_2 is deprecated; use target_trainloader_2.", DeprecationWarning, stacklevel=2)
        return self.target_trainloader_2


# --------------------------------------------------------------------------------------------------------------
# sampling


def ratio_indices(mask: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """The largest subset of rows in which ``ratio`` of the rows (rounded down) have ``mask`` True, sorted.

    The rows of the over-represented side are subsampled at random; the other side is kept whole.
    """
    mask = np.asarray(mask, dtype=bool)
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    if ratio >= 1:
        return yes
    if ratio <= 0:
        return no
    if len(yes) / max(len(mask), 1) <= ratio:
        keep_no = rng.permutation(no)[: int((1 - ratio) * len(yes) / ratio)]
        return np.sort(np.r_[yes, keep_no])
    keep_yes = rng.permutation(yes)[: int(ratio * len(no) / (1 - ratio))]
    return np.sort(np.r_[keep_yes, no])


def sample_with_ratio(mask: np.ndarray, ratio: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` rows, ``round(ratio * size)`` of them with ``mask`` True (raises if there are not enough)."""
    yes, no = np.flatnonzero(mask), np.flatnonzero(~np.asarray(mask, dtype=bool))
    n_yes = round(ratio * size)
    if n_yes > len(yes) or size - n_yes > len(no):
        raise InvalidParameterError(
            f"Cannot draw {size} rows with property ratio {ratio}: only {len(yes)} rows with and {len(no)} without "
            "the property. Lower 'train_subsample' or 'test_subsample'."
        )
    return np.sort(np.r_[rng.choice(yes, n_yes, replace=False), rng.choice(no, size - n_yes, replace=False)])


def heuristic_sample(
    y: np.ndarray,
    mask: np.ndarray,
    ratio: float,
    cwise_sample: int,
    class_imbalance: float,
    n_tries: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Row indices (sorted) of the best of ``n_tries`` class-balanced draws at property ratio ``ratio``.

    Each try subsamples the rows to the ratio (:func:`ratio_indices`), then keeps ``cwise_sample`` rows of label
    1 and ``int(class_imbalance * cwise_sample)`` of label 0 (with ``class_imbalance < 1``: ``cwise_sample`` of
    label 0 and ``int(cwise_sample / class_imbalance)`` of label 1), fewer where fewer exist. The try whose
    share of ``mask`` is closest to ``ratio`` wins.
    """
    mask = np.asarray(mask, dtype=bool)
    y = np.asarray(y).reshape(-1)
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    # ratio_indices, unrolled: one side is kept whole, ``k`` random rows of the other are added
    if ratio >= 1:
        whole, part, k = yes, no, 0
    elif ratio <= 0:
        whole, part, k = no, yes, 0
    elif len(yes) / max(len(mask), 1) <= ratio:
        whole, part, k = yes, no, int((1 - ratio) * len(yes) / ratio)
    else:
        whole, part, k = no, yes, int(ratio * len(no) / (1 - ratio))
    if class_imbalance >= 1:
        n_zero, n_one = int(class_imbalance * cwise_sample), int(cwise_sample)
    else:
        n_zero, n_one = int(cwise_sample), int(cwise_sample / class_imbalance)
    best, best_gap = np.array([], dtype=np.int64), np.inf
    for _ in range(n_tries):
        pool = np.concatenate([whole, rng.permutation(part)[:k]])
        labels = y[pool]
        zeros = rng.permutation(pool[labels == 0])[:n_zero]
        ones = rng.permutation(pool[labels == 1])[:n_one]
        picked = np.concatenate([zeros, ones]).astype(np.int64)
        gap = abs(float(mask[picked].mean()) - ratio) if len(picked) else np.inf
        if gap < best_gap or not len(best):
            best, best_gap = picked, gap
        if gap == 0:
            break
    return np.sort(best)


def _stratify_key(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """One integer per (label, sensitive values) combination; combinations with a single row share one key
    with the largest stratum (a stratified split needs at least two rows per stratum)."""
    _, key = np.unique(np.column_stack([y.reshape(-1, 1), z]), axis=0, return_inverse=True)
    key = key.reshape(-1)
    counts = np.bincount(key)
    rare = counts[key] < 2
    if rare.any():
        key = np.where(rare, int(np.argmax(counts)), key)
    return key


def _halves(y: np.ndarray, z: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 50/50 split of the rows, stratified on the label and every sensitive column (target half first)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    n = len(y)
    if n < 4:
        order = np.random.default_rng(seed).permutation(n)
        return np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.5, random_state=seed % (2**32))
    first, second = next(splitter.split(np.zeros(n), _stratify_key(y, z)))
    return np.sort(first), np.sort(second)


def _tensor_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).reshape(-1),
    )


def _train_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    """Shuffled, the last partial batch dropped (upstream's loader), except when the whole draw is smaller than one
    batch: upstream's loader then yields nothing, and models trained on it never see a row."""
    rows = len(dataset)  # type: ignore[arg-type]
    if rows == 0:
        return DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=rows >= batch_size)


# --------------------------------------------------------------------------------------------------------------
# the splits


@dataclass
class _Half:
    """One side's rows (target or adversary) of the training or test arrays."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray  # the property, per row


@dataclass
class _Plan:
    """Everything the draws need: the four halves and the sampling settings."""

    train: tuple[_Half, _Half]  # target, adversary
    test: tuple[_Half, _Half]
    ratios: tuple[float, float]
    train_subsample: int
    test_subsample: int
    class_imbalance: float
    n_tries: int

    def draw(self, half: _Half, ratio: float, subsample: int, rng: np.random.Generator) -> np.ndarray:
        return heuristic_sample(half.y, half.mask, ratio, subsample, self.class_imbalance, self.n_tries, rng)


def _check_splits_args(
    owner: str,
    arrays: dict[str, np.ndarray],
    sensitive_columns: list[str],
    filter_column: str,
    drop_values: dict[str, list[int]] | None,
) -> None:
    """Shapes, columns and names shared by :func:`prepare_distribution_splits` and the attacks' constructors."""
    columns = list(sensitive_columns) if not isinstance(sensitive_columns, str) else None
    if columns is None or not columns or not all(isinstance(c, str) for c in columns):
        raise InvalidParameterError(
            PARAM_MESSAGE.format(
                name="sensitive_columns", owner=owner, expected="a non-empty list of column names",
                value=sensitive_columns,
            )
        )  # fmt: skip
    if filter_column not in columns:
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name="filter_column", owner=owner, expected=f"one of {columns}", value=filter_column)
        )
    for name, values in (drop_values or {}).items():
        if name not in columns:
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="drop_values", owner=owner, expected=f"a dict keyed by columns of {columns}",
                    value=drop_values,
                )
            )  # fmt: skip
        if not isinstance(values, (list, tuple, set, np.ndarray)):
            raise InvalidParameterError(
                PARAM_MESSAGE.format(
                    name="drop_values", owner=owner, expected="a dict of column name -> list of values",
                    value=drop_values,
                )
            )  # fmt: skip
    for split in ("train", "test"):
        x, y, z = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"z_{split}"]
        if z.ndim != 2 or z.shape[1] != len(columns):
            width = z.shape[1] if z.ndim == 2 else f"shape {z.shape}, not 2-D"
            raise InvalidParameterError(
                f"z_{split} has {width} columns but sensitive_columns has {len(columns)} ({columns}): the "
                f"'z_{split}' parameter of {owner} must have one column per sensitive column."
            )
        if not (len(x) == len(y) == len(z)):
            raise InvalidParameterError(
                f"The 'y_{split}' and 'z_{split}' parameters of {owner} must have one row per row of x_{split} "
                f"({len(x)}). Got {len(y)} and {len(z)} instead."
            )


def _plan(
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
    train_subsample: int,
    test_subsample: int,
    filter_value: int,
    drop_values: dict[str, list[int]] | None,
    class_imbalance: float,
    n_tries: int,
    seed: int,
    owner: str = "prepare_distribution_splits",
) -> _Plan:
    """Validate the arguments, drop rows and halve both splits."""
    arrays = {
        "x_train": np.asarray(x_train),
        "y_train": np.asarray(y_train).reshape(-1),
        "z_train": np.asarray(z_train),
        "x_test": np.asarray(x_test),
        "y_test": np.asarray(y_test).reshape(-1),
        "z_test": np.asarray(z_test),
    }
    for name in ("z_train", "z_test"):
        if arrays[name].ndim == 1:
            arrays[name] = arrays[name].reshape(-1, 1)
    _check_splits_args(owner, arrays, sensitive_columns, filter_column, drop_values)
    for split in ("train", "test"):
        labels = np.unique(arrays[f"y_{split}"])
        if not np.isin(labels, [0, 1]).all():
            raise InvalidParameterError(
                f"The 'y_{split}' parameter of {owner} must hold binary labels (0/1): the class-balanced sampling "
                f"of Suri & Evans draws label-1 and label-0 rows. Got labels {labels[:10].tolist()} instead."
            )
    for name, value in (("ratio1", ratio1), ("ratio2", ratio2)):
        check_param(owner, name, value, [Interval(float, 0, 1)])
    for name, value in (("train_subsample", train_subsample), ("test_subsample", test_subsample)):
        check_param(owner, name, value, [Interval(int, 1, None)])
    check_param(owner, "class_imbalance", class_imbalance, [Interval(float, 0, None, closed="neither")])
    check_param(owner, "n_tries", n_tries, [Interval(int, 1, None)])
    check_param(owner, "seed", seed, [Interval(int, 0, None)])
    columns = list(sensitive_columns)
    col = columns.index(filter_column)

    def halves(split: str) -> tuple[_Half, _Half]:
        x, y, z = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"z_{split}"]
        keep = np.ones(len(y), dtype=bool)
        for name, values in (drop_values or {}).items():
            keep &= ~np.isin(z[:, columns.index(name)], list(values))
        x, y, z = x[keep], y[keep].astype(np.int64), z[keep]
        target, adversary = _halves(y, z, int(seed))
        mask = z[:, col] == filter_value
        return tuple(_Half(x[rows], y[rows], mask[rows]) for rows in (target, adversary))  # type: ignore[return-value]

    return _Plan(
        halves("train"),
        halves("test"),
        (float(ratio1), float(ratio2)),
        int(train_subsample),
        int(test_subsample),
        float(class_imbalance),
        int(n_tries),
    )


def _splits_from_plan(plan: _Plan, batch_size: int, rng: np.random.Generator) -> DistributionSplits:
    def train(half: _Half, ratio: float) -> DataLoader:
        rows = plan.draw(half, ratio, plan.train_subsample, rng)
        return _train_loader(_tensor_dataset(half.x[rows], half.y[rows]), batch_size)

    def test(ratio: float) -> DataLoader:
        parts = []
        for half in (plan.test[1], plan.test[0]):  # adversary's draw first, then the target's (upstream's order)
            rows = plan.draw(half, ratio, plan.test_subsample, rng)
            parts.append(_tensor_dataset(half.x[rows], half.y[rows]))
        return DataLoader(ConcatDataset(parts), batch_size=batch_size, shuffle=False)

    (target, adversary), (r1, r2) = plan.train, plan.ratios
    return DistributionSplits(
        target_trainloader_1=train(target, r1),
        target_trainloader_2=train(target, r2),
        adv_trainloader_1=train(adversary, r1),
        adv_trainloader_2=train(adversary, r2),
        test_loader_1=test(r1),
        test_loader_2=test(r2),
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
    train_subsample: int,
    test_subsample: int,
    filter_value: int = 1,
    drop_values: dict[str, list[int]] | None = None,
    class_imbalance: float = 3.0,
    n_tries: int = 100,
    batch_size: int = 256,
    seed: int = 42,
) -> DistributionSplits:
    """Build the six loaders of a distribution inference experiment (upstream Amulet 0.6's signature).

    The training and the test arrays are each split 50/50 into a target half and an adversary half, stratified
    on the label and every sensitive column. Each half is then drawn from twice, once at ``ratio1`` and once at
    ``ratio2`` (:func:`heuristic_sample`: the best of ``n_tries`` class-balanced draws). Works for any input
    shape (tabular ``(N, d)``, images ``(N, C, H, W)``); the sensitive attributes never enter the features.

    Args:
        x_train, y_train, z_train: Training features, binary labels (``(N,)`` or ``(N, 1)``) and sensitive
            attributes (``(N, len(sensitive_columns))``).
        x_test, y_test, z_test: Test features, labels and sensitive attributes.
        sensitive_columns: Names of the columns of ``z_train`` / ``z_test``.
        filter_column: The column whose share is inferred (e.g. ``"sex"``); one of ``sensitive_columns``.
        ratio1, ratio2: Share of rows with ``filter_column == filter_value`` in distribution 1 and 2, in [0, 1].
        train_subsample: Label-1 rows per training draw (label-0 rows: ``class_imbalance`` times as many).
        test_subsample: Label-1 rows per test draw (per half).
        filter_value: The value of ``filter_column`` that has the property. Default 1.
        drop_values: Rows whose column takes one of these values are dropped first (e.g. ``{"race": [2]}``).
        class_imbalance: Label-0 rows per label-1 row in each draw. Default 3.0.
        n_tries: Draws tried per loader; the one closest to the ratio is kept. Default 100.
        batch_size: Batch size of the loaders. Default 256.
        seed: Seed of the 50/50 halving and of every draw. Default 42.

    Returns:
        A :class:`DistributionSplits` whose loaders yield ``(x, y)`` batches: ``target_trainloader_1/2``,
        ``adv_trainloader_1/2`` (shuffled, last partial batch dropped unless the draw is smaller than one
        batch) and ``test_loader_1/2`` (the adversary's and the target's test draws at that ratio, concatenated).

    Raises:
        ValueError: (:class:`~amulet.exceptions.InvalidParameterError`) ``filter_column`` not in
            ``sensitive_columns``, ``z_train`` whose column count differs from ``len(sensitive_columns)``,
            non-binary labels, or a parameter out of range; the message names the parameter.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x, y, z = rng.normal(size=(400, 3)), rng.integers(0, 2, 400), rng.integers(0, 2, (400, 2))
        >>> splits = prepare_distribution_splits(x, y, z, x, y, z, ["race", "sex"], "sex", 0.2, 0.8, 20, 10)
        >>> xb, yb = next(iter(splits.target_trainloader_1))
        >>> xb.shape[1], len(splits.test_loader_1.dataset)
        (3, 80)
    """
    check_param("prepare_distribution_splits", "batch_size", batch_size, [Interval(int, 1, None)])
    plan = _plan(
        x_train, y_train, z_train, x_test, y_test, z_test, sensitive_columns, filter_column, ratio1, ratio2,
        train_subsample, test_subsample, filter_value, drop_values, class_imbalance, n_tries, seed,
    )  # fmt: skip
    return _splits_from_plan(plan, int(batch_size), np.random.default_rng(int(seed)))
