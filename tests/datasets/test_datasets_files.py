"""User files: CSV/Parquet tables and NPZ arrays, with validation errors that name the problem and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amulet.datasets import load_npz, load_tabular_file
from amulet.exceptions import InvalidParameterError


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n).round(2),
            "job": rng.choice(["clerk", "nurse", "farmer"], n),
            "female": rng.integers(0, 2, n),
            "race": rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1]),
            "region": rng.choice(["north", "south"], n, p=[0.3, 0.7]),
            "label": rng.choice(["no", "yes"], n),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_file_encodes_on_train_split_and_records_it(tmp_path, table, suffix):
    path = tmp_path / f"data{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    data = load_tabular_file(path, label="label", sensitive=["female", "race", "region", "age"], test_size=0.25)
    prep = data.preprocessing
    assert data.sensitive_columns == ["female", "race", "region", "age"] and data.num_classes == 2
    assert data.feature_names == ["job=clerk", "job=farmer", "job=nurse", "income"]  # sensitive columns excluded
    train = table.iloc[data.index_train]
    low, high = train["income"].min(), train["income"].max()
    assert (prep["numeric"]["income"]["min"], prep["numeric"]["income"]["max"]) == (low, high)
    np.testing.assert_allclose(data.x_train[:, 3], (train["income"] - low) / (high - low), atol=1e-6)
    test = table.iloc[data.index_test]
    np.testing.assert_allclose(data.x_test[:, 3], ((test["income"] - low) / (high - low)).clip(0, 1), atol=1e-6)
    for part in (data.x_train, data.x_test):  # uploaded tables lie in [0, 1] like the built-in ones
        assert part.min() >= 0.0 and part.max() <= 1.0
    assert prep["label"]["classes"] == ["no", "yes"] and len(prep["sha256"]) == 64
    np.testing.assert_array_equal(data.y_train, train["label"] == "yes")
    z = data.z_train
    np.testing.assert_array_equal(z[:, 0], train["female"])
    np.testing.assert_array_equal(z[:, 1], train["race"] == "A")
    np.testing.assert_array_equal(z[:, 2], train["region"] == "south")
    median = float(np.median(table["age"]))
    np.testing.assert_array_equal(z[:, 3], train["age"] >= median)
    assert prep["sensitive"]["race"].startswith("1 = 'A' (the most frequent value)")
    assert prep["sensitive"]["female"] == "used as is (values in {0, 1})"
    included = load_tabular_file(path, label="label", sensitive=["female"], include_sensitive=True)
    assert "female" in included.feature_names and included.x_train.dtype == np.float32


def _write(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def test_tabular_file_errors_name_the_column_and_the_fix(tmp_path, table):
    path = _write(tmp_path, table)
    with pytest.raises(InvalidParameterError, match=r"label column 'target'.*no such column.*label"):
        load_tabular_file(path, label="target")
    with pytest.raises(InvalidParameterError, match=r"sensitive column 'sex'.*no such column"):
        load_tabular_file(path, label="label", sensitive=["sex"])
    with_nan = table.astype({"income": float})
    with_nan.loc[[3, 7], "income"] = np.nan
    with pytest.raises(InvalidParameterError, match=r"Column 'income'.*2 missing.*Fill or drop"):
        load_tabular_file(_write(tmp_path, with_nan), label="label")
    with_inf = table.copy()
    with_inf.loc[0, "income"] = np.inf
    with pytest.raises(InvalidParameterError, match=r"Column 'income'.*infinite"):
        load_tabular_file(_write(tmp_path, with_inf), label="label")
    one_class = table.assign(label="yes")
    with pytest.raises(InvalidParameterError, match=r"label column 'label'.*only one class.*at least two classes"):
        load_tabular_file(_write(tmp_path, one_class), label="label")
    singleton = table.copy()
    singleton.loc[5, "label"] = "maybe"
    with pytest.raises(InvalidParameterError, match=r"class 'maybe' has a single row"):
        load_tabular_file(_write(tmp_path, singleton), label="label")
    with pytest.raises(InvalidParameterError, match="'test_size' parameter of load_tabular_file"):
        load_tabular_file(path, label="label", test_size=1.0)
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(InvalidParameterError, match=r"\.csv, \.tsv or \.parquet"):
        load_tabular_file(tmp_path / "t.xlsx", label="label")


def test_npz_tabular_and_image_arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tab.npz", x=rng.normal(size=(40, 5)), y=np.arange(40) % 2, z=(np.arange(40) % 3 == 0))
    data = load_npz(tmp_path / "tab.npz", test_size=0.25, random_seed=1)
    assert data.modality == "tabular" and data.num_features == 5 and data.sensitive_columns == ["z0"]
    assert data.x_train.shape == (30, 5) and data.z_train.shape == (30, 1)
    np.testing.assert_array_equal(data.z_train[:, 0], data.index_train % 3 == 0)
    np.testing.assert_array_equal(data.y_test, data.index_test % 2)
    images = rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    np.savez_compressed(tmp_path / "img.npz", x=images, y=np.repeat([3, 7], 10))
    data = load_npz(tmp_path / "img.npz")
    assert data.modality == "image" and data.x_train.shape[1:] == (3, 8, 8) and data.num_classes == 2
    np.testing.assert_allclose(data.x_train * 255, images[data.index_train], atol=1e-4)
    assert set(data.y_train) == {0, 1} and data.preprocessing["label"]["classes"] == [3, 7]


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        ({"x": np.zeros((10, 2))}, r"Array 'y'.*missing.*numpy.savez"),
        ({"x": np.full((10, 2), np.nan), "y": np.arange(10) % 2}, r"Array 'x'.*20 NaN/Inf"),
        ({"x": np.zeros((10, 2)), "y": np.arange(9) % 2}, r"Array 'y'.*does not match x's 10 rows"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2, "z": np.arange(10)}, r"Array 'z'.*not binary"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2, "z": np.zeros((4, 1))}, r"Array 'z'.*does not match"),
        ({"x": np.full((10, 1, 4, 4), 2.0), "y": np.arange(10) % 2}, r"Array 'x'.*image values.*divide by 255"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(10)}, r"Array 'y'.*at least two classes"),
        ({"x": np.zeros((10, 2)), "y": np.arange(10) / 3}, r"Array 'y'.*non-integer"),
    ],
)
def test_npz_validation_errors_name_the_array(tmp_path, arrays, pattern):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InvalidParameterError, match=pattern):
        load_npz(tmp_path / "bad.npz")


def test_npz_object_arrays_are_never_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 10, dtype=object), y=np.arange(10) % 2)
    with pytest.raises(InvalidParameterError, match=r"Array 'x'.*object array.*unpickling"):
        load_npz(tmp_path / "obj.npz")
    (tmp_path / "not.npz").write_bytes(b"plain text")
    with pytest.raises(InvalidParameterError, match=r"not an \.npz"):
        load_npz(tmp_path / "not.npz")


def test_feature_width_does_not_depend_on_the_split_seed(tmp_path):
    """A model exported for an uploaded table must fit it whatever split seed an assessment uses: the one-hot
    columns come from every row, so a rare category landing in the test split does not drop a column."""
    rng = np.random.default_rng(0)
    n = 200
    table = pd.DataFrame(
        {
            "city": np.where(np.arange(n) == 7, "rare", rng.choice(["a", "b", "c"], n)),  # "rare": one row only
            "age": rng.integers(18, 80, n),
            "sex": rng.choice(["f", "m"], n),
            "income": rng.integers(0, 2, n),
        }
    )
    path = tmp_path / "people.csv"
    table.to_csv(path, index=False)
    widths = {seed: load_tabular_file(path, label="income", sensitive=["sex"], random_seed=seed) for seed in range(6)}
    # the rare row falls in the training split for some seeds and in the test split for others
    homes = {seed: "city=rare" in ds.feature_names and ds.x_train[:, ds.feature_names.index("city=rare")].any()
             for seed, ds in widths.items()}  # fmt: skip
    assert len(set(homes.values())) == 2, homes
    assert {ds.x_train.shape[1] for ds in widths.values()} == {5}  # city a/b/c/rare + age
