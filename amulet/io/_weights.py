"""Reading model weights without ever unpickling, and checking them against an architecture.

Accepted formats, recognised by content (never by file name):

* safetensors (8-byte little-endian header length, then a JSON header): the primary format;
* a torch zip checkpoint (``torch.save`` since 1.6) holding a flat ``state_dict`` of tensors, read only with
  ``torch.load(weights_only=True)``, whose restricted unpickler refuses anything but tensors and plain
  containers, so no code in the file runs.

A raw pickle stream (``pickle.dump``, legacy ``torch.save``) is refused outright, as is anything else.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Literal

import torch
from torch import nn

from amulet.exceptions import ModelSpecError, UnsafeModelFileError

__all__ = ["WeightsSource", "check_weights", "detect_weights_format", "read_weights", "sha256_bytes", "sha256_file"]

WeightsSource = str | Path | bytes | bytearray | memoryview | BinaryIO
WeightsFormat = Literal["safetensors", "torch-zip", "pickle", "unknown"]

#: Message for a pickle stream; tests import it.
PICKLE_MESSAGE = (
    "The weights file is a Python pickle stream ({detail}). Amulet never unpickles model files, because "
    "loading a pickle can run arbitrary code. Export the model to an architecture spec plus safetensors "
    "weights with `amulet export-model` (see `amulet export-model --help`), or save "
    "`model.state_dict()` with `safetensors.torch.save_file`."
)
#: Message for a file in no accepted format.
UNKNOWN_FORMAT_MESSAGE = (
    "The weights file is neither safetensors nor a torch zip checkpoint (first bytes: {head!r}). Export the "
    "model with `amulet export-model` to get model.json + model.safetensors."
)
#: Message for a zip checkpoint that holds more than tensors.
NOT_WEIGHTS_ONLY_MESSAGE = (
    "The torch checkpoint holds objects other than tensors and plain containers, so it can only be read by "
    "unpickling arbitrary code, which Amulet never does ({detail}). Save `model.state_dict()` instead, or "
    "export with `amulet export-model`."
)
#: Message for a checkpoint that is not a flat ``{name: tensor}`` mapping.
NOT_FLAT_MESSAGE = (
    "The checkpoint is not a flat state_dict of tensors: {detail}. Save `model.state_dict()` itself (e.g. "
    "torch.save(checkpoint['state_dict'], path)) or export with `amulet export-model`."
)
#: Message for weights that do not fit the architecture; ``problems`` lists the offending keys.
WEIGHTS_MISMATCH_MESSAGE = "The weights do not match architecture {architecture!r}: {problems}."

_LIST_LIMIT = 8
_MAX_HEADER = 100 * 1024 * 1024


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"abc")
        >>> sha256_file(p)[:16]
        'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def detect_weights_format(head: bytes, total_size: int) -> WeightsFormat:
    """Recognise a weights file from its first bytes (at least 16) and its total size.

    Protocol 0/1 (text) pickles are ``"unknown"``, which is refused just the same.

    Returns:
        ``"safetensors"``, ``"torch-zip"``, ``"pickle"`` or ``"unknown"``.
    """
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= min(total_size - 8, _MAX_HEADER) and head[8:9] == b"{":
            return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _read_source(source: WeightsSource, max_bytes: int | None) -> tuple[bytes | None, Path | None]:
    """Return ``(data, None)`` for in-memory sources and ``(None, path)`` for paths."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ModelSpecError(f"Weights file {str(path)!r} does not exist.")
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise ModelSpecError(f"Weights file {str(path)!r} is larger than the limit of {max_bytes} bytes.")
        return None, path
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        limit = -1 if max_bytes is None else max_bytes + 1
        data = source.read(limit)
        if not isinstance(data, bytes):
            raise ModelSpecError("The weights stream must be opened in binary mode.")
    if max_bytes is not None and len(data) > max_bytes:
        raise ModelSpecError(f"The weights are larger than the limit of {max_bytes} bytes.")
    return data, None


def _flat_state_dict(obj: object) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ModelSpecError(NOT_FLAT_MESSAGE.format(detail=f"it holds a {type(obj).__name__}, not a dict"))
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ModelSpecError(NOT_FLAT_MESSAGE.format(detail=f"key {key!r} is not a string"))
        if not isinstance(value, torch.Tensor):
            raise ModelSpecError(
                NOT_FLAT_MESSAGE.format(detail=f"key {key!r} holds a {type(value).__name__}, not a tensor")
            )
        state[key] = value
    return state


def read_weights(source: WeightsSource, *, max_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Read a ``{name: tensor}`` state dict from a path, bytes or a binary stream, without unpickling.

    The format is recognised by content: safetensors, or a torch zip checkpoint holding a flat state dict
    (read with ``torch.load(weights_only=True)``). Tensors come back on the CPU.

    Args:
        source: File path, bytes-like object, or binary stream (e.g. an upload's ``.file``).
        max_bytes: Refuse larger inputs (``None``: no limit).

    Raises:
        UnsafeModelFileError: a pickle stream, a checkpoint with non-tensor objects, or an unknown format;
            the message says how to export the model instead.
        ModelSpecError: a missing, oversized or damaged file, or a checkpoint that is not a flat state dict.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load
    from safetensors.torch import load_file as st_load_file

    data, path = _read_source(source, max_bytes)
    if path is not None:
        with open(path, "rb") as handle:
            head = handle.read(64)
        total = path.stat().st_size
    else:
        assert data is not None
        head, total = data[:64], len(data)
    kind = detect_weights_format(head, total)
    where = str(path) if path is not None else "upload"

    if kind == "safetensors":
        try:
            return st_load_file(path) if path is not None else st_load(data)  # type: ignore[arg-type]
        except (SafetensorError, ValueError, OSError) as exc:
            raise ModelSpecError(f"The safetensors weights ({where}) are damaged: {exc}.") from exc
    if kind == "torch-zip":
        try:
            obj = torch.load(
                path if path is not None else io.BytesIO(data),  # type: ignore[arg-type]
                map_location="cpu",
                weights_only=True,
            )
        except pickle.UnpicklingError as exc:
            detail = str(exc).strip().splitlines()
            raise UnsafeModelFileError(NOT_WEIGHTS_ONLY_MESSAGE.format(detail=detail[-1] if detail else exc)) from exc
        except (RuntimeError, ValueError, OSError, EOFError, KeyError) as exc:
            raise ModelSpecError(
                f"The torch checkpoint ({where}) is damaged or not a torch checkpoint: {exc}."
            ) from exc
        return _flat_state_dict(obj)
    if kind == "pickle":
        raise UnsafeModelFileError(PICKLE_MESSAGE.format(detail=f"protocol {head[1]}"))
    raise UnsafeModelFileError(UNKNOWN_FORMAT_MESSAGE.format(head=head[:16]))


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating-point"
    if dtype.is_complex:
        return "complex"
    if dtype == torch.bool:
        return "bool"
    return "integer"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f" and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else "")


def check_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, architecture: str = "") -> None:
    """Check a state dict against ``model``'s: same keys, shapes and dtype kinds, and finite values.

    Floating-point tensors may differ in precision (they are cast when loaded); integer buffers (BatchNorm's
    ``num_batches_tracked``) must be integers.

    Args:
        model: The architecture (its values are not read; a model on the ``meta`` device works).
        state: The weights to check.
        architecture: Name used in the message (default: the model's class name).

    Raises:
        ModelSpecError: naming each missing, unexpected, mis-shaped, mis-typed or non-finite key.
    """
    expected = model.state_dict()
    problems: list[str] = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        hint = ""
        if all(k.startswith(("_module.", "module.")) for k in unexpected):
            hint = (
                " (the weights come from a wrapped model such as Opacus' GradSampleModule or DataParallel: save "
                "the inner module's state_dict)"
            )
        problems.append(f"unexpected keys {_listed(unexpected)}{hint}")
    shapes, kinds, nonfinite = [], [], []
    for key in sorted(set(expected) & set(state)):
        want, got = expected[key], state[key]
        if tuple(want.shape) != tuple(got.shape):
            shapes.append(f"{key} (file {list(got.shape)}, architecture {list(want.shape)})")
            continue
        if _kind(want.dtype) != _kind(got.dtype):
            kinds.append(f"{key} (file {got.dtype}, architecture needs a {_kind(want.dtype)} tensor)")
            continue
        if got.dtype.is_floating_point or got.dtype.is_complex:
            finite = torch.isfinite(got)
            if not bool(finite.all()):
                n_nan = int(torch.isnan(got).sum())
                n_inf = int((~finite).sum()) - n_nan
                nonfinite.append(f"{key} ({n_nan} NaN, {n_inf} Inf)")
    if shapes:
        problems.append(f"wrong shapes for {_listed(shapes)}")
    if kinds:
        problems.append(f"wrong dtypes for {_listed(kinds)}")
    if nonfinite:
        problems.append(f"non-finite values in {_listed(nonfinite)}")
    if problems:
        name = architecture or type(model).__name__
        raise ModelSpecError(WEIGHTS_MISMATCH_MESSAGE.format(architecture=name, problems="; ".join(problems)))
