"""Previews of files a user is about to upload (read locally in the dashboard, never unpickled).

Example:
    >>> preview = preview_file("people.csv", b"age,sex,income\\n39,Male,0\\n50,Female,1\\n")
    >>> preview.columns, preview.n_rows, preview.kind
    (['age', 'sex', 'income'], 2, 'tabular')
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LABEL_NAMES",
    "TABULAR_SUFFIXES",
    "FilePreview",
    "distinct_counts",
    "guess_label",
    "model_label",
    "preview_file",
    "shape_text",
]

TABULAR_SUFFIXES = (".csv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npz",)
#: Rows shown in a preview table.
PREVIEW_ROWS = 20


@dataclass
class FilePreview:
    """What the dashboard can tell about a file before uploading it.

    Attributes:
        kind: ``"tabular"`` (CSV/Parquet) or ``"arrays"`` (NPZ).
        columns: Column names of a tabular file (empty for NPZ).
        n_rows: Number of rows (of ``x`` for NPZ).
        head: The first rows (a pandas DataFrame) of a tabular file, or one row per NPZ array with its shape
            and dtype.
        arrays: For NPZ files, ``{name: (shape, dtype)}``.
        distinct: For tabular files, the number of distinct values of each column (to guess the label).
        error: Why the file cannot be read (then the other fields are empty).
    """

    kind: str
    columns: list[str] = field(default_factory=list)
    n_rows: int = 0
    head: Any = None
    arrays: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    distinct: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def preview_file(filename: str, content: bytes) -> FilePreview:
    """Read ``content`` (named ``filename``) enough to preview it and offer its columns."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in TABULAR_SUFFIXES:
        try:
            if suffix == ".csv":
                frame = pd.read_csv(io.BytesIO(content), skipinitialspace=True)
            else:
                frame = pd.read_parquet(io.BytesIO(content))
        except Exception as exc:  # any parser error is a message for the user
            return FilePreview(kind="tabular", error=f"Cannot read {filename} as {suffix[1:].upper()}: {exc}")
        return FilePreview(
            kind="tabular",
            columns=[str(c) for c in frame.columns],
            n_rows=len(frame),
            head=frame.head(PREVIEW_ROWS),
            distinct=distinct_counts(frame),
        )
    if suffix in ARRAY_SUFFIXES:
        try:
            with np.load(io.BytesIO(content), allow_pickle=False) as npz:
                arrays = {name: (tuple(npz[name].shape), str(npz[name].dtype)) for name in npz.files}
        except Exception as exc:  # pickled object arrays and corrupt archives land here
            return FilePreview(kind="arrays", error=f"Cannot read {filename} as NPZ without unpickling: {exc}")
        head = pd.DataFrame(
            [{"array": k, "shape": "x".join(map(str, s)) or "scalar", "dtype": d} for k, (s, d) in arrays.items()]
        )
        n_rows = arrays["x"][0][0] if "x" in arrays and arrays["x"][0] else 0
        return FilePreview(kind="arrays", n_rows=n_rows, head=head, arrays=arrays)
    return FilePreview(kind="unknown", error=f"{filename}: upload a .csv, .parquet or .npz file.")


#: Column names that say "this is the label" whatever the data (no dataset-specific names such as "income").
LABEL_NAMES = ("label", "target", "class", "y", "outcome")


def distinct_counts(frame: Any) -> dict[str, int]:
    """Distinct non-missing values per column of a pandas DataFrame."""
    return {str(c): int(frame[c].nunique(dropna=True)) for c in frame.columns}


def guess_label(columns: list[str], distinct: dict[str, int] | None = None, n_rows: int = 0) -> str | None:
    """A likely label column.

    A column named label/target/class/y/outcome; else, from the data (``distinct`` values per column out of
    ``n_rows``), the last binary column, then the last column with at most 20 distinct values and far fewer
    than rows (an id or a continuous measure is not a label); else the last column.

    Example:
        >>> guess_label(["age", "income", "approved"], {"age": 40, "income": 180, "approved": 2}, 200)
        'approved'
        >>> guess_label(["a", "Target", "b"]), guess_label(["a", "b"])
        ('Target', 'b')
    """
    lowered = {c.lower(): c for c in columns}
    for name in LABEL_NAMES:
        if name in lowered:
            return lowered[name]
    if distinct:
        binary = [c for c in columns if distinct.get(c) == 2]
        if binary:
            return binary[-1]
        few = [c for c in columns if 2 < distinct.get(c, 0) <= min(20, max(2, n_rows // 5))]
        if few:
            return few[-1]
    return columns[-1] if columns else None


def shape_text(shape: Any) -> str:
    """An input shape as the dashboard shows it (``[1, 28, 28]``), or an em dash when unknown.

    Example:
        >>> shape_text([1, 28, 28]), shape_text(None)
        ('[1, 28, 28]', '—')
    """
    if not isinstance(shape, (list, tuple)) or not shape:
        return "—"
    return "[" + ", ".join(str(int(v)) for v in shape) + "]"


def model_label(model: dict[str, Any]) -> str:
    """How an uploaded model is named in a picker: its name, format, input shape, classes and parameter count.

    Example:
        >>> model_label(
        ...     {"name": "resmlp", "format": "pt2", "input_shape": [104], "num_classes": 2, "num_parameters": 12345}
        ... )
        'resmlp (pt2, input [104], 2 classes, 12,345 parameters)'
    """
    parts = [str(model.get("format") or model.get("weights_format") or model.get("architecture") or "model")]
    if model.get("input_shape"):
        parts.append(f"input {shape_text(model['input_shape'])}")
    if isinstance(model.get("num_classes"), int):
        parts.append(f"{model['num_classes']} classes")
    n_parameters = model.get("num_parameters", model.get("n_parameters"))
    if isinstance(n_parameters, int):
        parts.append(f"{n_parameters:,} parameters")
    return f"{model.get('name') or model.get('id')} ({', '.join(parts)})"
