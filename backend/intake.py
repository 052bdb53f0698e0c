"""Validation of uploaded models and datasets, before anything is stored or queued.

Every failure is an :class:`IntakeError` carrying the HTTP status, the request field it concerns and a
message that says what is wrong and how to fix it. Nothing here unpickles: pickle files are recognised by
their first bytes and refused, safetensors are parsed by ``amulet.io``, state_dicts are only read through
``torch.load(weights_only=True)`` (inside ``amulet.io``), and NPZ members are read with
``allow_pickle=False``. Exported graphs (torch.export ``.pt2``, ONNX) are only ever opened by
``amulet.io.inspect_model_file`` (which checks every pickled member, operator and external-data reference
before anything is loaded) and ``amulet.io.preflight_graph_model`` (which validates again, then loads).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from backend.core.config import Settings

__all__ = [
    "DATASET_FORMATS",
    "EXPORT_HINT",
    "GRAPH_PICKLE_MESSAGE",
    "PICKLE_MESSAGE",
    "DatasetInfo",
    "GraphModelUpload",
    "IntakeError",
    "ModelInfo",
    "dataset_format",
    "graph_model_format",
    "non_finite_number",
    "parse_architecture_spec",
    "validate_dataset",
    "validate_graph_model",
    "validate_model",
    "weights_format",
    "check_layer_lists",
    "check_defense_rows",
    "check_planned_rows",
    "check_finite_numbers",
    "setting_limit",
]

#: File suffix -> dataset format.
DATASET_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}
#: The answer to a pickled model upload.
PICKLE_MESSAGE = (
    "The '{field}' file is a Python pickle, which is never loaded (unpickling runs arbitrary code). "
    "Export the model as an architecture spec plus safetensors weights with `amulet export-model` "
    "(or amulet.io.save_model) and upload those."
)
#: How to get from a Python model to an upload the service accepts (appended to every graph-model refusal).
EXPORT_HINT = (
    "Export it with `amulet export-model model.pt2 --entry my_module:build_model --dataset <dataset>` "
    "(a torch.export archive; --onnx writes an ONNX file too) and upload the .pt2 or .onnx file as 'model'."
)
#: The answer to a pickled upload in the ``model`` field (torch.save of a module or a checkpoint).
GRAPH_PICKLE_MESSAGE = (
    "The 'model' file is a pickled PyTorch file (torch.save), which is never loaded: unpickling runs "
    "arbitrary code. " + EXPORT_HINT
)
#: File suffixes of pickled PyTorch files.
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
_NPZ_MEMBERS = ("x", "y", "z")
_MAX_RATIO = 200  # uncompressed/compressed ratio above which an archive member counts as a zip bomb


class IntakeError(ValueError):
    """An upload failed validation: ``status_code`` (422, 413 or 415), ``field`` and ``message``."""

    def __init__(self, field_name: str, message: str, status_code: int = 422) -> None:
        self.field = field_name
        self.message = message
        self.status_code = status_code
        super().__init__(message)


@dataclass
class ModelInfo:
    """What a validated model upload records."""

    architecture: str
    spec: dict[str, Any]
    n_parameters: int


@dataclass
class GraphModelUpload:
    """What a validated exported-graph upload (``.pt2``/``.onnx``) records: ``amulet.io.GraphModelInfo``'s fields."""

    format: str
    input_shape: list[int]
    num_classes: int
    num_parameters: int
    sha256: str
    operators: list[str]

    @property
    def spec(self) -> dict[str, Any]:
        """The ``Model.spec`` JSON of the upload (what pre-flight compares with the dataset)."""
        return {
            "format": self.format,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "num_parameters": self.num_parameters,
            "sha256": self.sha256,
            "operators": list(self.operators),
        }


@dataclass
class DatasetInfo:
    """What a validated dataset upload records."""

    n_rows: int
    n_columns: int
    summary: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------ models
def weights_format(path: Path) -> str:
    """``"safetensors"``, ``"state_dict"`` (a torch zip archive) or ``"pickle"``, from the file's first bytes."""
    with path.open("rb") as handle:
        head = handle.read(16)
    size = path.stat().st_size
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "state_dict"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def non_finite_number(value: Any, field: str) -> tuple[str, float] | None:
    """The first non-finite float (NaN, Infinity, or a literal like ``1e400``) in a parsed JSON ``value``, with
    its field path under ``field`` (``spec.seeds[0]``); None when every number is finite.

    Walked without recursion: a request body nested a few hundred levels deep is valid JSON.
    """
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, item
        if isinstance(item, dict):
            stack.extend((f"{path}.{key}", v) for key, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def check_finite_numbers(value: Any, field: str) -> None:
    """Refuse a parsed JSON ``value`` that holds NaN or an infinite number (Python's parser reads ``NaN``,
    ``Infinity`` and ``1e400``; no JSON answer or PostgreSQL JSON column can hold them).

    Raises:
        IntakeError: 422 naming the first such field.
    """
    found = non_finite_number(value, field)
    if found is not None:
        path, number = found
        raise IntakeError(
            path, f"{path} is {number}, not a finite number: NaN and infinite values are refused. Use a finite number."
        )


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of the range of a finite number")
    return number


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; use a finite number")


def parse_architecture_spec(raw: bytes) -> dict[str, Any]:
    """Parse the architecture spec JSON of a model upload (field ``spec``); NaN and infinite numbers are
    refused like invalid JSON."""
    try:
        spec = json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeError(
            "spec",
            "The 'spec' file must be the architecture spec JSON written by amulet.io.save_model; "
            f"it is not valid JSON ({exc}).",
        ) from exc
    except RecursionError as exc:
        raise IntakeError(
            "spec",
            "The 'spec' file is nested too deeply to be an architecture spec. Upload the spec JSON written "
            "by amulet.io.save_model.",
        ) from exc
    if not isinstance(spec, dict):
        raise IntakeError(
            "spec", "The 'spec' file must hold a JSON object (the architecture spec), not a list or value."
        )
    return spec


def setting_limit(value: int, setting: str) -> str:
    """How a message names a bound: the value, the setting and its environment variable."""
    return f"the limit of {value:,} (setting {setting}, AMULET_{setting.upper()})"


def check_defense_rows(defenses: Any, settings: Settings) -> int | None:
    """Refuse a raw spec's defense row names longer than ``max_name_length``; return how many matrix rows the
    ``defenses`` list makes (None when it is not a list).

    A swept parameter counts one row per value, counted and never expanded here: a 1 KB spec can sweep
    millions of rows, which expanding would take minutes and gigabytes to find out.

    Raises:
        IntakeError: 422 naming the row's ``name`` field, the limit and the setting.
    """
    if not isinstance(defenses, list):
        return None
    from amulet.assess._spec import count_expanded_rows

    for i, row in enumerate(defenses):
        name = row.get("name") if isinstance(row, dict) else None
        if isinstance(name, str) and len(name) > settings.max_name_length:
            raise IntakeError(
                f"spec.defenses[{i}].name",
                f"defenses[{i}].name has {len(name):,} characters, more than "
                f"{setting_limit(settings.max_name_length, 'max_name_length')}. Use a shorter row name.",
            )
    return sum(count_expanded_rows(row) for row in defenses)


def check_planned_rows(rows: Iterable[str]) -> None:
    """Refuse planned row names longer than the database stores (a swept row's name adds the swept values
    to the row's own, so a short enough ``name`` can still make a long row name).

    Raises:
        IntakeError: 422 on ``spec.defenses`` naming the row and the limit.
    """
    from backend.models import Cell

    limit = int(Cell.__table__.c.row.type.length)  # type: ignore[attr-defined]
    for name in rows:
        if len(name) > limit:
            raise IntakeError(
                "spec.defenses",
                f"The row {name[:80]!r}... has a {len(name):,}-character name, more than the {limit} the service "
                "stores. Give the row a shorter 'name', or sweep fewer parameters in it (a swept row's name "
                "lists the values that vary).",
            )


def check_layer_lists(config: Any, settings: Settings, *, field_prefix: str, where: str) -> None:
    """Refuse a model config's layer lists (``hidden_layer_sizes``, ``fc_layers``) that are not positive
    integers, wider than ``max_layer_width`` or longer than ``max_model_layers`` (building and checking a
    model takes time in the number of layers), before any model is built.

    Args:
        config: The ``config`` mapping of a model (anything else is left to the spec's own validation).
        settings: Holds the bounds.
        field_prefix: The request field of ``config`` (e.g. ``"spec.model.config"``); the error names
            ``<field_prefix>.<list name>``.
        where: How messages name ``config`` (e.g. ``"model.config"``).

    Raises:
        IntakeError: 422 naming the field, the limit and the setting.
    """
    if not isinstance(config, dict):
        return
    for name in ("hidden_layer_sizes", "fc_layers"):
        widths = config.get(name)
        if not isinstance(widths, (list, tuple)):
            continue
        field = f"{field_prefix}.{name}"
        if len(widths) > settings.max_model_layers:
            raise IntakeError(
                field,
                f"{where}.{name}: {len(widths):,} layers, more than "
                f"{setting_limit(settings.max_model_layers, 'max_model_layers')}. "
                "Use fewer layers (e.g. the capacities m1..m4).",
            )
        bad = [w for w in widths if not isinstance(w, int) or isinstance(w, bool) or w < 1]
        if bad:
            raise IntakeError(
                field,
                f"{where}.{name}: layer widths must be positive integers; got {bad[0]!r} in {list(widths)[:20]}. "
                "Use whole numbers of units such as [64, 32].",
            )
        too_wide = [w for w in widths if w > settings.max_layer_width]
        if too_wide:
            raise IntakeError(
                field,
                f"{where}.{name}: layer widths must be at most {settings.max_layer_width}; got {too_wide[0]} "
                f"in {list(widths)[:20]}, more than {setting_limit(settings.max_layer_width, 'max_layer_width')}. "
                "Use smaller layers (e.g. the capacities m1..m4).",
            )


def validate_model(spec: dict[str, Any], weights_path: Path, settings: Settings | None = None) -> ModelInfo:
    """Check the architecture spec against the registry and the weights against the architecture.

    The architecture is built on the meta device first (no memory) and refused when it has more parameters
    than ``settings.max_model_parameters`` (default: the process settings), before the weights are loaded
    into a real model: a 2 KB spec can describe a model of billions of parameters.

    Raises:
        IntakeError: 415 for a pickle, 422 for a bad spec or weights (missing/unexpected keys, shapes, NaN)
            or a model past the parameter limit.
    """
    kind = weights_format(weights_path)
    if kind == "pickle":
        raise IntakeError("weights", PICKLE_MESSAGE.format(field="weights"), 415)
    if kind == "unknown":
        raise IntakeError(
            "weights",
            "The 'weights' file is neither safetensors nor a torch state_dict archive. "
            "Save the weights with amulet.io.save_model (safetensors) and upload that file.",
            415,
        )
    from amulet.exceptions import ModelSpecError, UnsafeModelFileError
    from amulet.io import build_model, load_model, read_spec
    from backend.core.config import get_settings

    max_parameters = (settings or get_settings()).max_model_parameters
    try:
        arch = read_spec(spec)
        meta = build_model(arch, device="meta")  # the registry check: known architecture, valid config
    except (RuntimeError, NotImplementedError):
        meta = None  # a factory that cannot build on the meta device: load_model checks it below
    except (ModelSpecError, ValueError, TypeError) as exc:
        raise IntakeError("spec", f"The architecture spec is invalid: {exc}") from exc
    if meta is not None:
        n_meta = sum(p.numel() for p in meta.parameters())
        if n_meta > max_parameters:
            raise IntakeError(
                "spec",
                f"The architecture spec describes a model of {n_meta:,} parameters, more than "
                f"{setting_limit(max_parameters, 'max_model_parameters')}; an assessment trains several copies. "
                "Upload a smaller model.",
            )
    try:
        model = load_model(arch, weights_path)
    except UnsafeModelFileError as exc:
        raise IntakeError("weights", str(exc), 415) from exc
    except ModelSpecError as exc:
        raise IntakeError("weights", str(exc)) from exc
    except (ValueError, RuntimeError, OSError) as exc:
        raise IntakeError("weights", f"The weights could not be loaded into the architecture: {exc}") from exc
    n_parameters = sum(p.numel() for p in model.parameters())
    return ModelInfo(architecture=arch.architecture, spec=arch.model_dump(mode="json"), n_parameters=int(n_parameters))


# ----------------------------------------------------------------------------------------- exported graph models
def _with_hint(message: str) -> str:
    message = message.strip()
    return message if "export-model" in message else f"{message} {EXPORT_HINT}"


def _is_torch_save_archive(path: Path) -> bool:
    """A zip written by ``torch.save`` (a pickle in ``<name>/data.pkl``), not a torch.export archive.

    Only the zip's directory is read; nothing is unpickled.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    pickled = any(n.rsplit("/", 1)[-1] == "data.pkl" and n.count("/") <= 1 for n in names)
    exported = any(n.rsplit("/", 1)[-1] == "archive_format" for n in names)
    return pickled and not exported


def graph_model_format(filename: str, path: Path, settings: Settings) -> str:
    """``"pt2"`` or ``"onnx"``: the format of an upload in the ``model`` field, checked before it is inspected.

    Pickles (by their first bytes, a ``torch.save`` zip, or a pickle file suffix) are 415 with the export
    command; a zip archive that expands past ``settings.max_uncompressed_bytes`` is 413.

    Raises:
        IntakeError: 415 for a pickle or an unknown file type, 413 for a zip bomb.
    """
    suffix = Path(filename or "").suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(4)
    if head[:1] == b"\x80" or suffix in _PICKLE_SUFFIXES or (head == b"PK\x03\x04" and _is_torch_save_archive(path)):
        raise IntakeError("model", GRAPH_PICKLE_MESSAGE, 415)
    if suffix == ".safetensors":
        raise IntakeError(
            "model",
            "Safetensors weights go in the 'weights' field, with their architecture spec JSON in 'spec'. "
            "For an architecture that is not registered, " + EXPORT_HINT[0].lower() + EXPORT_HINT[1:],
            415,
        )
    if suffix not in (".pt2", ".onnx"):
        raise IntakeError(
            "model",
            f"The 'model' file must be a torch.export archive (.pt2) or an ONNX model (.onnx); got {filename!r}. "
            + EXPORT_HINT,
            415,
        )
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                expanded = sum(i.file_size for i in archive.infolist())
        except zipfile.BadZipFile as exc:
            raise IntakeError("model", _with_hint(f"The 'model' file is not a readable .pt2 archive: {exc}.")) from exc
        if expanded > settings.max_uncompressed_bytes:
            raise IntakeError(
                "model",
                f"The .pt2 archive expands to {expanded} bytes, more than the limit of "
                f"{settings.max_uncompressed_bytes} (AMULET_MAX_UNCOMPRESSED_BYTES); it is refused as a zip bomb.",
                413,
            )
    return suffix[1:]


def validate_graph_model(path: Path, settings: Settings | None = None) -> GraphModelUpload:
    """Validate a stored ``.pt2``/``.onnx`` upload: ``amulet.io.inspect_model_file``, then pre-flight.

    Inspection reads the archive without running anything in it (every pickled member with
    ``weights_only=True``, only known aten/prim operators, no external data outside the upload's folder). The
    pre-flight (``amulet.io.preflight_graph_model``, which validates again before it loads) then checks the
    model against its own declared input shape and class count: a finite forward pass on a batch and
    gradients that reach the input (PGD and model inversion need them). Against a dataset it runs again at
    submit.

    Raises:
        IntakeError: 415 for unsafe content, 422 for a malformed or unusable model, each naming what is wrong
            and how to export the model.
    """
    from amulet.exceptions import ModelSpecError, UnsafeModelFileError
    from amulet.io import inspect_model_file, preflight_graph_model
    from backend.core.config import get_settings

    max_parameters = (settings or get_settings()).max_model_parameters

    try:
        info = inspect_model_file(path)
    except UnsafeModelFileError as exc:
        raise IntakeError("model", _with_hint(f"The 'model' file is refused as unsafe: {exc}"), 415) from exc
    except ModelSpecError as exc:
        raise IntakeError("model", _with_hint(f"The 'model' file cannot be used: {exc}")) from exc
    except Exception as exc:  # a corrupt archive or protobuf: the reader's own error type
        raise IntakeError(
            "model", _with_hint(f"The 'model' file could not be read ({type(exc).__name__}: {exc}).")
        ) from exc
    upload = GraphModelUpload(
        format=str(info.format),
        input_shape=[int(v) for v in info.input_shape],
        num_classes=int(info.num_classes),
        num_parameters=int(info.num_parameters),
        sha256=str(info.sha256),
        operators=[str(o) for o in info.operators],
    )
    if upload.num_parameters > max_parameters:
        raise IntakeError(
            "model",
            f"The model has {upload.num_parameters:,} parameters, more than the limit of {max_parameters:,} "
            "(setting max_model_parameters, AMULET_MAX_MODEL_PARAMETERS; an assessment trains several copies). "
            "Upload a smaller model.",
        )
    try:
        preflight_graph_model(path, tuple(upload.input_shape), upload.num_classes)
    except UnsafeModelFileError as exc:
        raise IntakeError("model", _with_hint(f"The 'model' file is refused as unsafe: {exc}"), 415) from exc
    except ModelSpecError as exc:
        raise IntakeError("model", _with_hint(f"The model fails the pre-flight check: {exc}")) from exc
    return upload


# ---------------------------------------------------------------------------------------------------- datasets
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
    from amulet.datasets import load_tabular_file

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
    from amulet.assess import DatasetSpec

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
    from amulet.datasets import load_npz

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
