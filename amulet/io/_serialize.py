"""Saving and loading models as an architecture spec (JSON) plus safetensors weights."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amulet.exceptions import ModelSpecError
from amulet.io._spec import ArchitectureSpec, build_model, read_spec, spec_from_model
from amulet.io._weights import WeightsSource, check_weights, read_weights, sha256_bytes, sha256_file

__all__ = ["SPEC_FILENAME", "WEIGHTS_FILENAME", "load_model", "save_model"]

SPEC_FILENAME = "model.json"
WEIGHTS_FILENAME = "model.safetensors"

SpecSource = ArchitectureSpec | Mapping[str, Any] | str | Path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _target_paths(dir_or_paths: str | Path | Sequence[str | Path]) -> tuple[Path, Path]:
    if isinstance(dir_or_paths, (str, Path)):
        directory = Path(dir_or_paths)
        return directory / SPEC_FILENAME, directory / WEIGHTS_FILENAME
    paths = list(dir_or_paths)
    if len(paths) != 2:
        raise ModelSpecError(
            f"save_model needs a directory or a (spec_path, weights_path) pair; got {len(paths)} paths."
        )
    return Path(paths[0]), Path(paths[1])


def save_model(
    model: nn.Module,
    dir_or_paths: str | Path | Sequence[str | Path],
    spec: SpecSource | None = None,
) -> tuple[Path, Path]:
    """Write ``model`` as an architecture spec (``model.json``) and safetensors weights (``model.safetensors``).

    The weights are first checked against the architecture the spec describes (same keys, shapes and
    dtype kinds, finite values), so whatever ``save_model`` writes, :func:`load_model` reads back. The
    written spec carries the weights' SHA-256.

    Args:
        model: The model; its ``state_dict`` (parameters and buffers) is saved.
        dir_or_paths: A directory (created if missing; the files are ``model.json`` and
            ``model.safetensors`` inside) or a ``(spec_path, weights_path)`` pair.
        spec: The architecture spec (an :class:`ArchitectureSpec`, a mapping, JSON text or a JSON path).
            ``None`` describes a zoo model (LinearNet, SimpleCNN) from the model itself.

    Returns:
        ``(spec_path, weights_path)``.

    Raises:
        ModelSpecError: invalid spec, or weights that do not fit it (the message names the keys).

    Example:
        >>> import tempfile, torch
        >>> from amulet.io import load_model, save_model
        >>> from amulet.models import LinearNet
        >>> model = LinearNet(6, 2, hidden_layer_sizes=[4]).eval()
        >>> spec_path, weights_path = save_model(model, tempfile.mkdtemp())
        >>> x = torch.randn(3, 6)
        >>> torch.equal(load_model(spec_path, weights_path)(x), model(x))
        True
    """
    from safetensors.torch import save as st_save

    resolved = read_spec(spec) if spec is not None else spec_from_model(model)
    state = {key: value.detach().to("cpu").contiguous().clone() for key, value in model.state_dict().items()}
    try:
        reference = build_model(resolved, device="meta")
    except (RuntimeError, NotImplementedError):  # a factory that cannot build on the meta device
        reference = build_model(resolved)
    check_weights(reference, state, architecture=resolved.architecture)

    payload = st_save(state, metadata={"format": "pt", "amulet_architecture": resolved.architecture})
    resolved = resolved.model_copy(update={"weights_sha256": sha256_bytes(payload)})
    spec_path, weights_path = _target_paths(dir_or_paths)
    _atomic_write(weights_path, payload)
    _atomic_write(spec_path, (resolved.model_dump_json(indent=2) + "\n").encode())
    return spec_path, weights_path


def load_model(
    spec: SpecSource,
    weights_path: WeightsSource,
    *,
    device: torch.device | str = "cpu",
    check_forward: bool = True,
    max_bytes: int | None = None,
) -> nn.Module:
    """Build the architecture ``spec`` describes and load the weights into it, never unpickling anything.

    Steps: validate the spec (schema, then the architecture registry: unknown names list the known ones,
    bad config values name the field); check the weights' SHA-256 when the spec carries one; read the
    weights by content (safetensors, or a flat state dict in a torch zip checkpoint via
    ``torch.load(weights_only=True)``; pickle streams are refused); check them against the architecture
    (missing/unexpected keys, shapes, dtypes, NaN/Inf); load them; and, with ``check_forward``, run one
    forward pass on zeros of ``input_shape`` to confirm the output has ``num_classes`` logits.

    Args:
        spec: An :class:`ArchitectureSpec`, a mapping, JSON text, or the path of ``model.json``.
        weights_path: Path, bytes or binary stream of the weights.
        device: Where the returned model lives. Default ``"cpu"``.
        check_forward: Run the forward check. Default ``True``.
        max_bytes: Refuse weights larger than this (``None``: no limit).

    Returns:
        The model, in eval mode, on ``device``.

    Raises:
        ModelSpecError: invalid spec, checksum mismatch, or weights that do not fit (naming the keys).
        UnsafeModelFileError: a pickle or unrecognised weights file (the message says to run
            ``amulet export-model``).
    """
    resolved = read_spec(spec)
    if resolved.weights_sha256 is not None:
        if isinstance(weights_path, (str, Path)):
            actual = sha256_file(weights_path) if Path(weights_path).is_file() else None
        elif isinstance(weights_path, (bytes, bytearray, memoryview)):
            actual = sha256_bytes(weights_path)
        else:
            weights_path = weights_path.read() if max_bytes is None else weights_path.read(max_bytes + 1)
            actual = sha256_bytes(weights_path)  # type: ignore[arg-type]
        if actual is not None and actual != resolved.weights_sha256:
            raise ModelSpecError(
                f"The weights' SHA-256 {actual} differs from weights_sha256 {resolved.weights_sha256} in the "
                "architecture spec: the weights file is not the one the spec was written for."
            )
    try:  # the registry check comes first: a bad spec is reported before the weights are read
        meta_model: nn.Module | None = build_model(resolved, device="meta")
    except (RuntimeError, NotImplementedError):  # a factory that cannot build on the meta device
        meta_model = None
    state = read_weights(weights_path, max_bytes=max_bytes)
    model = _build_and_load(resolved, state, meta_model)
    model.eval()
    if check_forward:
        _check_forward(model, resolved)
    return model.to(device)


def _build_and_load(spec: ArchitectureSpec, state: dict[str, torch.Tensor], model: nn.Module | None) -> nn.Module:
    """Load ``state`` (checked first) into the architecture, given ``model`` built on the meta device.

    The loaded tensors are assigned to the meta-device model, which skips the random initialisation the
    weights would overwrite anyway; architectures that cannot be built that way (``model`` is ``None``) or
    keep tensors outside their state dict are built normally.
    """
    if model is not None:
        check_weights(model, state, architecture=spec.architecture)
        expected = model.state_dict()
        cast = {key: value.to(expected[key].dtype).contiguous() for key, value in state.items()}
        model.load_state_dict(cast, strict=True, assign=True)
        tensors = [*model.parameters(), *model.buffers()]
        if not any(t.is_meta for t in tensors):
            return model
    model = build_model(spec)
    check_weights(model, state, architecture=spec.architecture)
    expected = model.state_dict()
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()}, strict=True)
    return model


def _check_forward(model: nn.Module, spec: ArchitectureSpec) -> None:
    x = torch.zeros(2, *spec.input_shape)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # any failure here means the spec's input_shape does not fit the model
        raise ModelSpecError(
            f"The model built from the spec fails on an input of shape {list(spec.input_shape)} "
            f"(the spec's 'input_shape'): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelSpecError(
            f"The model's output for 2 inputs has shape {shape}, but the spec's 'num_classes' is "
            f"{spec.num_classes} (expected [2, {spec.num_classes}])."
        )
