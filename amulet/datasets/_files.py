"""User-supplied datasets: CSV/Parquet tables and NPZ arrays, validated before use.

Every problem is reported as :class:`~amulet.exceptions.InvalidParameterError` naming the column or array
at fault and the fix. Nothing is ever unpickled (``np.load(..., allow_pickle=False)``).

Sensitive-attribute rule for tables (``load_tabular_file``), recorded in ``preprocessing["sensitive"]``:

- a column whose values are all in {0, 1} (or {False, True}) is used as is;
- any other column with exactly two distinct values: 1 = the more frequent value (ties: the larger value);
- a numeric column with more values: 1 = value >= the column's median;
- a non-numeric column with more values: 1 = the most frequent value, 0 = every other value.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amulet._validation import Interval, check_param
from amulet.datasets._base import AmuletDataset, make_tensor_dataset
from amulet.datasets._tabular_prep import encode_split, stratified_indices
from amulet.exceptions import InvalidParameterError
from amulet.settings import get_settings

__all__ = ["FILE_ERROR", "load_npz", "load_tabular_file"]

logger = logging.getLogger("amulet.datasets")

#: Message template of a bad file; tests import it.
FILE_ERROR = "{what} in {file!r}: {problem}. {fix}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(what: str, file: Path, problem: str, fix: str) -> InvalidParameterError:
    return InvalidParameterError(FILE_ERROR.format(what=what, file=file.name, problem=problem, fix=fix))


def _read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError(
                "Reading Parquet needs pyarrow: pip install 'amulet-studio[server]' (or pip install pyarrow)."
            ) from error
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt") or path.name.endswith((".csv.gz", ".tsv.gz")):
        return pd.read_csv(path, sep="\t" if ".tsv" in path.name else ",")
    raise InvalidParameterError(
        f"The 'path' parameter of load_tabular_file must be a .csv, .tsv or .parquet file. Got {path.name!r} instead."
    )


def _binarise(column: Any, name: str) -> tuple[np.ndarray, str]:
    import pandas as pd

    values = column.to_numpy()
    distinct = pd.unique(column)
    if set(distinct.tolist()) <= {0, 1}:
        return values.astype(np.int64), "used as is (values in {0, 1})"
    counts = column.value_counts()
    if len(distinct) == 2:
        top = counts.max()
        chosen = max(v for v in counts.index if counts[v] == top)
        return (values == chosen).astype(np.int64), f"1 = {chosen!r} (the more frequent of its two values)"
    if pd.api.types.is_numeric_dtype(column):
        median = float(np.median(values.astype(np.float64)))
        return (values.astype(np.float64) >= median).astype(np.int64), f"1 = value >= median {median:g}"
    top_value = counts.index[0]
    return (values == top_value).astype(np.int64), f"1 = {top_value!r} (the most frequent value), 0 = other values"


def load_tabular_file(
    path: str | Path,
    *,
    label: str,
    sensitive: Sequence[str] = (),
    test_size: float = 0.5,
    random_seed: int = 7,
    include_sensitive: bool = False,
) -> AmuletDataset:
    """Load a CSV or Parquet table as a classification dataset.

    The rows are split with a seeded stratified split; then categorical (non-numeric and boolean) feature
    columns are one-hot encoded and numeric ones min-max scaled into [0, 1], both fitted on the training split
    only; test values beyond the training split's min/max are clipped to 0 or 1, so every feature lies in
    [0, 1] (the value range attacks such as PGD assume by default).
    The fitted encoding, the label mapping, the sensitive-attribute rule of each column (see the module
    docstring) and the file's SHA-256 are recorded in ``preprocessing``.

    Args:
        path: ``.csv``, ``.tsv`` (optionally gzipped) or ``.parquet`` file with a header row.
        label: Name of the label column (any values; mapped to 0..k-1 in sorted order).
        sensitive: Names of the sensitive-attribute columns, binarised into ``z``.
        test_size: Fraction of rows in the test split, in (0, 1).
        random_seed: Seed of the split.
        include_sensitive: Keep the sensitive columns among the features as well.

    Returns:
        An :class:`AmuletDataset` (modality ``"tabular"``).

    Raises:
        InvalidParameterError: A missing column, missing or infinite values, fewer than two classes or a
            class with a single row, too many rows or columns; the message names the column and the fix.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> rows = "".join(f"{20 + i},{'ab'[i % 2]},{i % 3},{i % 2}\\n" for i in range(20))
        >>> _ = f.write_text("age,job,group,y\\n" + rows)
        >>> d = load_tabular_file(f, label="y", sensitive=["group"])
        >>> d.num_features, d.x_train.shape, d.z_train.shape, d.preprocessing["sensitive"]["group"]
        (3, (10, 3), (10, 1), '1 = value >= median 1')
    """
    check_param("load_tabular_file", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_tabular_file", "random_seed", random_seed, [Interval(int, 0, None)])
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(
            f"The 'path' parameter of load_tabular_file must be an existing file. Got {str(path)!r} instead."
        )
    settings = get_settings()
    table = _read_table(path)
    columns = [str(c) for c in table.columns]
    table.columns = columns
    if len(table) > settings.max_rows or len(columns) > settings.max_columns:
        raise _fail(
            "Size",
            path,
            f"{len(table)} rows x {len(columns)} columns exceeds the limit of "
            f"{settings.max_rows} rows x {settings.max_columns} columns",
            "Subsample the file or raise AMULET_MAX_ROWS / AMULET_MAX_COLUMNS.",
        )
    sensitive = list(sensitive)
    for role, names in (("label", [label]), ("sensitive", sensitive)):
        for name in names:
            if name not in columns:
                raise _fail(
                    f"The {role} column {name!r}",
                    path,
                    "no such column",
                    f"Pick one of the file's columns: {', '.join(columns)}.",
                )
    if label in sensitive:
        raise InvalidParameterError(f"The label column {label!r} cannot also be a sensitive column.")
    missing = table.isna().sum()
    for name in columns:
        if missing[name]:
            raise _fail(
                f"Column {name!r}",
                path,
                f"{int(missing[name])} missing (NaN/empty) values",
                "Fill or drop those rows, or drop the column, before uploading.",
            )
    import pandas as pd

    numeric_cols = [
        c for c in columns if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
    ]
    for name in numeric_cols:
        if not np.isfinite(table[name].to_numpy(dtype=np.float64)).all():
            raise _fail(f"Column {name!r}", path, "infinite values", "Replace or drop the rows with inf/-inf.")
    classes, y = np.unique(table[label].to_numpy(), return_inverse=True)
    y = y.astype(np.int64)
    if len(classes) < 2:
        raise _fail(
            f"The label column {label!r}",
            path,
            f"only one class ({classes.tolist()!r})",
            "A classification dataset needs at least two classes.",
        )
    counts = np.bincount(y)
    if counts.min() < 2:
        rare = classes[int(counts.argmin())]
        raise _fail(
            f"The label column {label!r}",
            path,
            f"class {rare!r} has a single row",
            "Every class needs at least two rows for a stratified split; drop or merge that class.",
        )
    z_columns, rules = [], {}
    for name in sensitive:
        values, rule = _binarise(table[name], name)
        z_columns.append(values)
        rules[name] = rule
    feature_cols = [c for c in columns if c != label and (include_sensitive or c not in sensitive)]
    if not feature_cols:
        raise _fail("Features", path, "no feature column left", "Add feature columns or pass include_sensitive=True.")
    numeric = [c for c in feature_cols if c in numeric_cols]
    categorical = [c for c in feature_cols if c not in numeric_cols]
    try:
        train_idx, test_idx = stratified_indices(y, test_size, random_seed)
    except ValueError as error:
        raise _fail(
            "Split", path, str(error), "Use more rows or a test_size that leaves every class in both splits."
        ) from error
    x_train, x_test, encoding = encode_split(table[feature_cols], train_idx, test_idx, categorical, numeric)
    z = np.stack(z_columns, axis=1) if z_columns else None
    description = encoding.describe()
    description.update(
        label={"column": label, "classes": [c.item() if hasattr(c, "item") else c for c in classes]},
        sensitive=rules,
        split={"test_size": test_size, "random_seed": random_seed, "stratified_on": "label"},
        sha256=_sha256(path),
        file=path.name,
    )
    logger.info(
        "%s: %d rows (%d train / %d test), %d features",
        path.name,
        len(y),
        len(train_idx),
        len(test_idx),
        x_train.shape[1],
    )
    return AmuletDataset(
        train_set=make_tensor_dataset(x_train, y[train_idx]),
        test_set=make_tensor_dataset(x_test, y[test_idx]),
        num_features=int(x_train.shape[1]),
        num_classes=len(classes),
        modality="tabular",
        sensitive_columns=sensitive or None,
        x_train=x_train,
        x_test=x_test,
        y_train=y[train_idx],
        y_test=y[test_idx],
        z_train=None if z is None else z[train_idx],
        z_test=None if z is None else z[test_idx],
        name=path.stem,
        source=f"file {path}",
        feature_names=list(encoding.feature_names_),
        preprocessing=description,
        index_train=train_idx,
        index_test=test_idx,
    )


def load_npz(path: str | Path, *, test_size: float = 0.5, random_seed: int = 7) -> AmuletDataset:
    """Load an ``.npz`` with arrays ``x``, ``y`` and optionally ``z`` as a classification dataset.

    ``x`` with 4 dimensions is an image batch in NCHW layout (3 dimensions: NHW, a channel axis is added);
    ``uint8`` images are divided by 255 and float images must already be in [0, 1]. ``x`` with 2 dimensions
    is used as is (modality ``"tabular"``). ``y`` holds integer labels (mapped to 0..k-1 in sorted order);
    ``z`` holds binary sensitive attributes, shape (n,) or (n, k). Nothing is unpickled.

    Args:
        path: The ``.npz`` file.
        test_size: Fraction of rows in the test split, in (0, 1).
        random_seed: Seed of the stratified split.

    Returns:
        An :class:`AmuletDataset`; ``sensitive_columns`` are ``["z0", "z1", ...]``.

    Raises:
        InvalidParameterError: Missing arrays, object arrays, NaN/Inf, mismatched lengths, non-integer or
            single-class labels, non-binary ``z``; the message names the array.
    """
    check_param("load_npz", "test_size", test_size, [Interval(float, 0, 1, closed="neither")])
    check_param("load_npz", "random_seed", random_seed, [Interval(int, 0, None)])
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(
            f"The 'path' parameter of load_npz must be an existing file. Got {str(path)!r} instead."
        )
    limit = get_settings().max_upload_bytes * 16
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as error:
        raise _fail(
            "File", path, "not an .npz (zip) archive", "Save the arrays with numpy.savez or numpy.savez_compressed."
        ) from error
    if expanded > limit:
        raise _fail("File", path, f"expands to {expanded} bytes (limit {limit})", "Upload a smaller dataset.")
    arrays: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as archive:
        for name in ("x", "y", "z"):
            if name in archive.files:
                try:
                    arrays[name] = archive[name]
                except ValueError as error:
                    raise _fail(
                        f"Array {name!r}",
                        path,
                        "an object array (would need unpickling)",
                        "Save numeric arrays only (e.g. x.astype('float32')).",
                    ) from error
        names = list(archive.files)
    for name in ("x", "y"):
        if name not in arrays:
            raise _fail(
                f"Array {name!r}",
                path,
                f"missing (arrays present: {names})",
                "Save the inputs as 'x' and the labels as 'y': numpy.savez(f, x=..., y=..., z=...).",
            )
    x, y, z = arrays["x"], arrays["y"], arrays.get("z")
    for name, array in arrays.items():
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise _fail(f"Array {name!r}", path, f"dtype {array.dtype} is not numeric", "Save numeric arrays only.")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise _fail(
                f"Array {name!r}",
                path,
                f"{int((~np.isfinite(array)).sum())} NaN/Inf values",
                "Replace or drop the rows with NaN/Inf.",
            )
    if x.ndim not in (2, 3, 4) or len(x) < 4:
        raise _fail("Array 'x'", path, f"shape {x.shape}", "x must be (n, features), (n, H, W) or (n, C, H, W).")
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != len(x):
        raise _fail(
            "Array 'y'",
            path,
            f"shape {y.shape} does not match x's {len(x)} rows",
            "y must be 1-D with one label per row of x.",
        )
    if np.issubdtype(y.dtype, np.floating) and not np.array_equal(y, np.round(y)):
        raise _fail("Array 'y'", path, "non-integer labels", "y must hold integer class labels.")
    classes, y_codes = np.unique(y, return_inverse=True)
    if len(classes) < 2 or np.bincount(y_codes).min() < 2:
        raise _fail(
            "Array 'y'",
            path,
            f"classes {classes.tolist()} with counts {np.bincount(y_codes).tolist()}",
            "Provide at least two classes with at least two rows each.",
        )
    if z is not None:
        z = z.reshape(-1, 1) if z.ndim == 1 else z
        if z.ndim != 2 or len(z) != len(x):
            raise _fail(
                "Array 'z'", path, f"shape {z.shape} does not match x's {len(x)} rows", "z must be (n,) or (n, k)."
            )
        if not set(np.unique(z).tolist()) <= {0, 1}:
            raise _fail(
                "Array 'z'",
                path,
                f"values {np.unique(z)[:10].tolist()} are not binary",
                "Binarise each sensitive attribute to 0/1.",
            )
        z = z.astype(np.int64)
    modality = "tabular"
    if x.ndim >= 3:
        modality = "image"
        if x.ndim == 3:
            x = x[:, None]
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
        elif x.min() < 0 or x.max() > 1:
            raise _fail(
                "Array 'x'",
                path,
                f"image values in [{x.min():g}, {x.max():g}]",
                "Images must be uint8 or floats in [0, 1] (divide by 255).",
            )
    x = np.ascontiguousarray(x, dtype=np.float32)
    y_codes = y_codes.astype(np.int64)
    train_idx, test_idx = stratified_indices(y_codes, test_size, random_seed)
    num_features = int(x.shape[-1] * x.shape[-2]) if modality == "image" else int(x.shape[1])
    logger.info("%s: %d rows (%d train / %d test), x %s", path.name, len(x), len(train_idx), len(test_idx), x.shape[1:])
    return AmuletDataset(
        train_set=make_tensor_dataset(x[train_idx], y_codes[train_idx]),
        test_set=make_tensor_dataset(x[test_idx], y_codes[test_idx]),
        num_features=num_features,
        num_classes=len(classes),
        modality=modality,  # type: ignore[arg-type]
        sensitive_columns=None if z is None else [f"z{i}" for i in range(z.shape[1])],
        x_train=x[train_idx],
        x_test=x[test_idx],
        y_train=y_codes[train_idx],
        y_test=y_codes[test_idx],
        z_train=None if z is None else z[train_idx],
        z_test=None if z is None else z[test_idx],
        name=path.stem,
        source=f"file {path}",
        preprocessing={
            "label": {"classes": classes.tolist()},
            "sha256": _sha256(path),
            "file": path.name,
            "split": {"test_size": test_size, "random_seed": random_seed, "stratified_on": "label"},
        },
        index_train=train_idx,
        index_test=test_idx,
    )
