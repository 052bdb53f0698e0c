"""Validation of an uploaded dataset (CSV, Parquet, NPZ): format, size limits, label and sensitive columns;
NPZ members are read with ``allow_pickle=False`` and checked against zip bombs."""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from amulet.assess import DatasetSpec
from amulet.datasets import load_npz, load_tabular_file
from backend.core.config import Settings
from backend.intake.checks import IntakeError

__all__ = ["DATASET_FORMATS", "DatasetInfo", "dataset_format", "upload_message", "validate_dataset"]


#: File suffix -> dataset format.
DATASET_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}

_NPZ_MEMBERS = ("x", "y", "z")

_MAX_RATIO = 200  # uncompressed/compressed ratio above which an archive member counts as a zip bomb


@dataclass
class DatasetInfo:
    """What a validated dataset upload records."""

    n_rows: int
    n_columns: int
    summary: dict[str, Any] = field(default_factory=dict)


def dataset_format(filename: str) -> str:
    """The dataset format of an upload, from its file name (field ``file``)."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in DATASET_FORMATS:
        raise IntakeError(
            "file",
            f"The 'file' must be a .csv, .parquet or .npz file. Got {filename!r} instead.",
            415,
        )
    return DATASET_FORMATS[suffix]


#: Advice the engine's loaders give Python callers that an uploader cannot follow, and what to do instead.
_UPLOAD_ADVICE = {"pass include_sensitive=True": "name fewer columns in the 'sensitive' field"}


def upload_message(message: str, stored: Path | None, filename: str | None) -> str:
    """An intake message as the uploader reads it: their own file's name (the service stores every upload as
    ``data.<ext>``) and advice they can follow with the upload form's fields."""
    if stored is not None and filename:
        client_name = Path(filename).name
        message = message.replace(repr(stored.name), repr(client_name)).replace(stored.name, client_name)
    for engine_advice, upload_advice in _UPLOAD_ADVICE.items():
        message = message.replace(engine_advice, upload_advice)
    return message


def validate_dataset(
    path: Path, fmt: str, *, label: str | None, sensitive: list[str], settings: Settings
) -> DatasetInfo:
    """Validate a stored dataset upload: limits, zip bombs, columns, NaN/Inf, then the engine's loader."""
    if fmt == "npz":
        return _validate_npz(path, settings)
    if not label:
        raise IntakeError("label", "A CSV/Parquet dataset needs the 'label' form field: the name of the label column.")
    if fmt == "parquet":
        columns, n_rows = _parquet_shape(path, settings)
    else:
        columns, n_rows = _csv_shape(path)
    _check_limits(n_rows, len(columns), settings)
    if label not in columns:
        raise IntakeError(
            "label", f"The label column {label!r} is not in the file. Name one of its columns: {_show(columns)}."
        )
    missing = [c for c in sensitive if c not in columns]
    if missing:
        raise IntakeError(
            "sensitive",
            f"The sensitive column(s) {', '.join(map(repr, missing))} are not in the file. "
            f"Name columns of the file: {_show(columns)}.",
        )
    if label in sensitive:
        raise IntakeError("sensitive", f"The label column {label!r} cannot also be a sensitive column.")

    try:
        # The split an assessment uses by default: the one-hot columns (so num_features, the input width a
        # model must take) come from the categories of its train split.
        data = load_tabular_file(path, label=label, sensitive=tuple(sensitive), random_seed=_default_split_seed())
    except (ValueError, KeyError) as exc:
        raise IntakeError(_field_of(str(exc), label, sensitive), str(exc).strip("'\"")) from exc
    except Exception as exc:  # a damaged file: pyarrow and pandas raise OSError and their own types
        what = "Parquet" if fmt == "parquet" else "CSV"
        raise IntakeError(
            "file",
            f"The 'file' is not a readable {what} file ({type(exc).__name__}: {exc}). "
            f"Write it again (for example pandas.DataFrame.to_{'parquet' if fmt == 'parquet' else 'csv'}) "
            "and upload the new file.",
        ) from exc
    return DatasetInfo(
        n_rows=n_rows,
        n_columns=len(columns),
        summary={
            "columns": columns[:200],
            "num_features": int(data.num_features),
            "num_classes": int(data.num_classes),
            "modality": data.modality,
        },
    )


def _default_split_seed() -> int:
    """The assessment spec's default ``dataset.split_seed``."""
    return int(DatasetSpec.model_fields["split_seed"].default)


def _show(columns: list[str]) -> str:
    shown = ", ".join(map(repr, columns[:20]))
    return shown + (f" ... ({len(columns)} columns)" if len(columns) > 20 else "")


def _field_of(message: str, label: str, sensitive: list[str]) -> str:
    if "'label'" in message or repr(label) in message:
        return "label"
    if "sensitive" in message or any(repr(c) in message for c in sensitive):
        return "sensitive"
    return "file"


def _check_limits(n_rows: int, n_columns: int, settings: Settings) -> None:
    if n_rows > settings.max_rows:
        raise IntakeError(
            "file",
            f"The dataset has {n_rows} rows, more than the limit of {settings.max_rows} (AMULET_MAX_ROWS). "
            "Upload a subsample or ask the operator to raise the limit.",
        )
    if n_columns > settings.max_columns:
        raise IntakeError(
            "file",
            f"The dataset has {n_columns} columns, more than the limit of {settings.max_columns} (AMULET_MAX_COLUMNS). "
            "Drop unused columns before uploading.",
        )
    if n_rows < 2:
        raise IntakeError("file", f"The dataset has {n_rows} data rows; at least 2 are needed.")


def _csv_shape(path: Path) -> tuple[list[str], int]:
    import pandas as pd

    try:
        header = pd.read_csv(path, nrows=0)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntakeError("file", f"The 'file' is not a readable CSV file with a header row: {exc}") from exc
    with path.open("rb") as handle:
        n_lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        handle.seek(-1, 2)
        if handle.read(1) != b"\n":
            n_lines += 1
    return [str(c) for c in header.columns], max(0, n_lines - 1)


def _parquet_shape(path: Path, settings: Settings) -> tuple[list[str], int]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is in the [server] extra
        raise IntakeError(
            "file", "Parquet uploads need pyarrow on the server (pip install 'amulet-studio[server]').", 415
        ) from exc
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise IntakeError("file", f"The 'file' is not a readable Parquet file: {exc}") from exc
    uncompressed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if uncompressed > settings.max_uncompressed_bytes:
        raise IntakeError(
            "file",
            f"The Parquet file expands to {uncompressed} bytes, more than the limit of "
            f"{settings.max_uncompressed_bytes} "
            "(AMULET_MAX_UNCOMPRESSED_BYTES). Upload fewer rows or columns.",
            413,
        )
    return [str(meta.schema.column(i).name) for i in range(meta.num_columns)], int(meta.num_rows)


def _read_npy_member(name: str, member: IO[bytes], member_size: int, settings: Settings) -> np.ndarray:
    """Read one ``.npy`` member of an NPZ, checking its header before anything is allocated.

    ``numpy.lib.format.read_array`` allocates the array its header declares before reading a byte of data,
    so a 100-byte member that claims shape (10**12, 4) would ask for 29 TiB. The declared size is checked
    against the member's real size and the uncompressed limit first; object dtypes are refused unread.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(member)
        else:
            shape, fortran_order, dtype = fmt.read_array_header_2_0(member)
    except ValueError as exc:
        raise IntakeError(
            name,
            f"The NPZ array '{name}' does not start with a valid .npy header ({exc}). "
            "Save the arrays with numpy.savez and upload that file.",
        ) from exc
    if dtype.hasobject:
        raise IntakeError(
            name,
            f"The NPZ array '{name}' has an object dtype and could not be read without unpickling. "
            "Save plain numeric arrays (no object dtype).",
        )
    declared = math.prod(int(v) for v in shape) * dtype.itemsize
    if declared > settings.max_uncompressed_bytes or declared > member_size:
        raise IntakeError(
            name,
            f"The NPZ array '{name}' declares shape {tuple(shape)} of {dtype} ({declared} bytes), but its member "
            f"holds {member_size} bytes (limit {settings.max_uncompressed_bytes}, AMULET_MAX_UNCOMPRESSED_BYTES). "
            "Save the arrays again with numpy.savez and upload that file.",
            413 if declared <= member_size else 422,
        )
    data = member.read(declared)
    if len(data) != declared:
        raise IntakeError(
            name,
            f"The NPZ array '{name}' is truncated: {len(data)} of {declared} bytes. "
            "Save the arrays again with numpy.savez and upload the new file.",
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
    return array


def _validate_npz(path: Path, settings: Settings) -> DatasetInfo:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise IntakeError(
            "file", "The 'file' is not an NPZ archive (numpy.savez); re-save it with numpy.savez."
        ) from exc
    with archive:
        infos = {Path(i.filename).stem: i for i in archive.infolist()}
        unknown = sorted(name for name in infos if name not in _NPZ_MEMBERS)
        if unknown or "x" not in infos or "y" not in infos:
            raise IntakeError(
                "file",
                f"An NPZ dataset holds arrays named x, y and optionally z. Got {sorted(infos)} instead; "
                "save it with numpy.savez(path, x=features, y=labels, z=sensitive).",
            )
        total = sum(i.file_size for i in infos.values())
        if total > settings.max_uncompressed_bytes or any(
            i.compress_size and i.file_size / i.compress_size > _MAX_RATIO and i.file_size > 1 << 20
            for i in infos.values()
        ):
            raise IntakeError(
                "file",
                f"The NPZ archive expands to {total} bytes (limit {settings.max_uncompressed_bytes}, "
                f"AMULET_MAX_UNCOMPRESSED_BYTES) or is compressed more than {_MAX_RATIO}:1; "
                "it is refused as a zip bomb.",
                413,
            )
        arrays: dict[str, np.ndarray] = {}
        for name, info in infos.items():
            try:
                with archive.open(info) as member:
                    arrays[name] = _read_npy_member(name, member, info.file_size, settings)
            except IntakeError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                # A changed CRC, corrupt deflated bytes or a truncated member: the archive is damaged.
                raise IntakeError(
                    name,
                    f"The NPZ array '{name}' is damaged and cannot be read ({type(exc).__name__}: {exc}). "
                    "Save the arrays again with numpy.savez and upload the new file.",
                ) from exc
    x, y = arrays["x"], arrays["y"]
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise IntakeError(name, f"The NPZ array '{name}' has dtype {arr.dtype}; it must be numeric (int or float).")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            n_bad = int((~np.isfinite(arr)).sum())
            raise IntakeError(
                name,
                f"The NPZ array '{name}' contains {n_bad} NaN or infinite value(s). "
                f"Drop those rows or replace them (e.g. numpy.nan_to_num) before uploading.",
            )
    if x.ndim < 2:
        raise IntakeError("x", f"The NPZ array 'x' must have shape (n_samples, ...). Got shape {x.shape} instead.")
    if y.ndim != 1 or len(y) != len(x):
        raise IntakeError(
            "y", f"The NPZ array 'y' must have shape ({len(x)},), one label per row of x. Got shape {y.shape} instead."
        )
    if "z" in arrays and len(arrays["z"]) != len(x):
        raise IntakeError("z", f"The NPZ array 'z' must have {len(x)} rows, one per row of x. Got {len(arrays['z'])}.")
    _check_limits(len(x), int(np.prod(x.shape[1:])), settings)

    try:
        data = load_npz(path, random_seed=_default_split_seed())
    except (ValueError, KeyError) as exc:
        raise IntakeError("file", str(exc)) from exc
    return DatasetInfo(
        n_rows=len(x),
        n_columns=int(np.prod(x.shape[1:])),
        summary={
            "x_shape": list(x.shape),
            "num_features": int(data.num_features),
            "num_classes": int(data.num_classes),
            "modality": data.modality,
        },
    )
