"""Validation of an uploaded exported graph (torch.export ``.pt2``, ONNX), only ever opened by
``amulet.io.inspect_model_file``; pickled PyTorch files are refused with the way to export instead."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io import inspect_model_file, preflight_graph_model
from backend.core.config import Settings, get_settings
from backend.intake.checks import IntakeError

__all__ = ["EXPORT_HINT", "GRAPH_PICKLE_MESSAGE", "GraphModelUpload", "graph_model_format", "validate_graph_model"]

#: File suffixes of pickled PyTorch files.
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


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
