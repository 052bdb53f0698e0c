"""Shared tabular preprocessing: stratified split, then one-hot + min-max scaling into [0, 1] fitted on the train
split (test rows clipped into [0, 1]); the built-in tables drop the first category of each one-hot block, as
upstream Amulet does."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from amulet.exceptions import InvalidParameterError

__all__ = ["TabularEncoding", "check_split_rows", "encode_split", "stratified_indices"]


def check_split_rows(owner: str, n_rows: int, test_size: float) -> None:
    """Raise when a ``test_size`` split of ``n_rows`` rows leaves fewer than 2 rows on either side.

    The split puts ``ceil(test_size * n_rows)`` rows in the test part (scikit-learn's rule) and the rest in
    the training part; a part of 0 or 1 row cannot be trained on, scored or stratified.

    Raises:
        InvalidParameterError: (a ``ValueError``) naming ``test_size`` and the sizes it would give.
    """
    n_test = math.ceil(test_size * n_rows)
    n_train = n_rows - n_test
    if n_test < 2 or n_train < 2:
        raise InvalidParameterError(
            f"The 'test_size' parameter of {owner} must leave at least 2 rows in each split of the {n_rows} rows. "
            f"Got {test_size!r}, which gives {n_train} training and {n_test} test rows; use a test_size between "
            f"{2 / n_rows:.3g} and {1 - 2 / n_rows:.3g}."
            if n_rows >= 4
            else f"{owner} needs at least 4 rows to split into training and test rows; the data has {n_rows}."
        )


def stratified_indices(
    y: np.ndarray, test_size: float, random_seed: int, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split of ``range(len(y))``; returns sorted index arrays.

    ``stratify`` defaults to ``y``; pass a combined key (e.g. label x sensitive group) to keep more
    proportions.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    for key in (y if stratify is None else stratify, y):
        try:
            train_idx, test_idx = train_test_split(
                index, test_size=test_size, stratify=key, random_state=int(random_seed)
            )
            return np.sort(train_idx), np.sort(test_idx)
        except ValueError:
            continue
    logging.getLogger("amulet.datasets").warning(
        "A class is too rare for a stratified split of %d rows; using a plain seeded split instead.", len(y)
    )
    train_idx, test_idx = train_test_split(index, test_size=test_size, random_state=int(random_seed))
    return np.sort(train_idx), np.sort(test_idx)


class TabularEncoding:
    """One-hot encoding of categorical columns and min-max scaling of numeric columns into [0, 1].

    Both are fitted on the training rows only (``fit``) and then applied to any rows (``transform``), so
    every encoded feature lies in [0, 1], as upstream Amulet's tabular data does: one-hot columns are 0/1
    and each numeric column maps the training split's minimum to 0 and its maximum to 1. Attacks whose
    budgets are stated on that scale (PGD's ``epsilon`` with its default clip range [0, 1]) then mean the
    same thing on every built-in dataset.

    Rows outside the training split (the test split, or any later rows) can hold values below the training
    minimum or above the training maximum; those are clipped to 0 and 1 after scaling. Without the clip a
    test row could lie outside [0, 1], and an attack restricted to [0, 1] would move it further than its
    budget just to bring it back into range. The loaders take the categories from every row of the table
    (see :meth:`fit`), so the width does not depend on the split; a category never seen at fit time encodes
    as all zeros. A numeric column that is constant on the training rows encodes as 0.

    With ``drop_first=True`` the columns follow ``pandas.get_dummies(frame, drop_first=True)``, which is how
    upstream Amulet encodes census: the numeric columns first, then each categorical column's one-hot block
    without its first (sorted) category, which is encoded as the block being all zeros. The built-in tables
    use it so that their features (census: 93 columns) are upstream's; uploaded tables keep every category.

    Args:
        categorical: Names of the categorical columns (one-hot encoded, in this order).
        numeric: Names of the numeric columns (min-max scaled, in this order).
        drop_first: Drop each block's first category and put the numeric columns first (upstream's layout).
    """

    def __init__(self, categorical: Sequence[str], numeric: Sequence[str], *, drop_first: bool = False):
        self.categorical = list(categorical)
        self.numeric = list(numeric)
        self.drop_first = bool(drop_first)

    def fit(self, frame: pd.DataFrame, *, categories_from: pd.DataFrame | None = None) -> TabularEncoding:
        """Learn categories and per-column minima/maxima from ``frame`` (the training rows).

        Args:
            frame: The training rows (the minima and maxima are fitted on them only).
            categories_from: The rows whose categories define the one-hot columns (default ``frame``).
                Loaders pass the whole table: the set of categories is the table's schema, not a statistic of
                its values, and reading it from every row keeps the feature width (and so the input shape a
                model is exported for) the same for every split seed.
        """
        source = frame if categories_from is None else categories_from
        self.categories_ = {c: sorted(source[c].astype(str).unique().tolist()) for c in self.categorical}
        values = frame[self.numeric].to_numpy(dtype=np.float64) if self.numeric else np.zeros((len(frame), 0))
        if len(values):
            self.min_ = values.min(axis=0)
            self.max_ = values.max(axis=0)
        else:
            self.min_ = np.zeros(values.shape[1])
            self.max_ = np.zeros(values.shape[1])
        span = self.max_ - self.min_
        # A constant column has no range to scale by; dividing by 1 maps it to 0.
        self.range_ = np.where(span > 0, span, 1.0)
        self.n_fit_rows_ = len(frame)
        one_hot = [f"{c}={v}" for c in self.categorical for v in self._encoded_categories(c)]
        self.feature_names_ = list(self.numeric) + one_hot if self.drop_first else one_hot + list(self.numeric)
        return self

    def _encoded_categories(self, column: str) -> list[str]:
        """The categories of ``column`` that have a column of their own (all but the first with drop_first)."""
        return self.categories_[column][1:] if self.drop_first else self.categories_[column]

    def transform(self, frame: pd.DataFrame, dtype: Any = np.float32) -> np.ndarray:
        """Encode ``frame`` into a matrix in [0, 1] of ``dtype`` with columns :attr:`feature_names_`."""
        blocks = []
        for c in self.categorical:
            cats = pd.Categorical(frame[c].astype(str), categories=self.categories_[c])
            codes = np.asarray(cats.codes)
            block = np.zeros((len(frame), len(self.categories_[c])), dtype=np.float64)
            known = codes >= 0
            block[np.nonzero(known)[0], codes[known]] = 1.0
            # The dropped first category is the all-zero pattern of the remaining columns.
            blocks.append(block[:, 1:] if self.drop_first else block)
        if self.numeric:
            values = frame[self.numeric].to_numpy(dtype=np.float64)
            # Clip: rows outside the training split may exceed the training min/max (see the class docstring).
            scaled = np.clip((values - self.min_) / self.range_, 0.0, 1.0)
            if self.drop_first:
                blocks.insert(0, scaled)
            else:
                blocks.append(scaled)
        if not blocks:
            return np.zeros((len(frame), 0), dtype=dtype)
        return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=dtype)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable record of the fitted encoding."""
        if self.drop_first:
            one_hot = "one-hot without the first category (the first category is the all-zero pattern; unseen "
            one_hot += "categories too)"
        else:
            one_hot = "one-hot (unseen categories -> all zeros)"
        categorical: dict[str, Any] = {}
        for c in self.categorical:
            categorical[c] = {"encoding": one_hot, "categories": self.categories_[c]}
            if self.drop_first and self.categories_[c]:
                categorical[c]["dropped"] = self.categories_[c][0]
        return {
            "fitted_on": f"training split only ({self.n_fit_rows_} rows); categories from every row of the table",
            "value_range": [0.0, 1.0],
            "drop_first": self.drop_first,
            "categorical": categorical,
            "numeric": {
                c: {
                    "encoding": "min-max scaling to [0, 1]: (value - min) / (max - min); values outside the "
                    "training split's [min, max] are clipped to 0 or 1",
                    "min": float(lo),
                    "max": float(hi),
                }
                for c, lo, hi in zip(self.numeric, self.min_, self.max_)
            },
            "feature_names": list(self.feature_names_),
        }


def encode_split(
    features: pd.DataFrame,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    categorical: Sequence[str],
    numeric: Sequence[str],
    *,
    drop_first: bool = False,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray, TabularEncoding]:
    """Fit :class:`TabularEncoding` on the training rows (categories: every row) and encode both splits."""
    encoding = TabularEncoding(categorical, numeric, drop_first=drop_first)
    encoding.fit(features.iloc[train_idx], categories_from=features)
    train = encoding.transform(features.iloc[train_idx], dtype)
    return train, encoding.transform(features.iloc[test_idx], dtype), encoding
