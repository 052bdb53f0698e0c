"""Shared tabular preprocessing: stratified split, then one-hot + min-max scaling into [0, 1] fitted on the train
split (test rows clipped into [0, 1])."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TabularEncoding", "encode_split", "stratified_indices"]


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

    Args:
        categorical: Names of the categorical columns (one-hot encoded, in this order).
        numeric: Names of the numeric columns (min-max scaled, in this order, after the one-hot block).
    """

    def __init__(self, categorical: Sequence[str], numeric: Sequence[str]):
        self.categorical = list(categorical)
        self.numeric = list(numeric)

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
        self.feature_names_ = [f"{c}={v}" for c in self.categorical for v in self.categories_[c]] + list(self.numeric)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` into a float32 matrix in [0, 1] with columns :attr:`feature_names_`."""
        blocks = []
        for c in self.categorical:
            cats = pd.Categorical(frame[c].astype(str), categories=self.categories_[c])
            codes = np.asarray(cats.codes)
            block = np.zeros((len(frame), len(self.categories_[c])), dtype=np.float32)
            known = codes >= 0
            block[np.nonzero(known)[0], codes[known]] = 1.0
            blocks.append(block)
        if self.numeric:
            values = frame[self.numeric].to_numpy(dtype=np.float64)
            # Clip: rows outside the training split may exceed the training min/max (see the class docstring).
            scaled = np.clip((values - self.min_) / self.range_, 0.0, 1.0)
            blocks.append(scaled.astype(np.float32))
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable record of the fitted encoding."""
        return {
            "fitted_on": f"training split only ({self.n_fit_rows_} rows); categories from every row of the table",
            "value_range": [0.0, 1.0],
            "categorical": {
                c: {"encoding": "one-hot (unseen categories -> all zeros)", "categories": self.categories_[c]}
                for c in self.categorical
            },
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
) -> tuple[np.ndarray, np.ndarray, TabularEncoding]:
    """Fit :class:`TabularEncoding` on the training rows (categories: every row) and encode both splits."""
    encoding = TabularEncoding(categorical, numeric).fit(features.iloc[train_idx], categories_from=features)
    return encoding.transform(features.iloc[train_idx]), encoding.transform(features.iloc[test_idx]), encoding
