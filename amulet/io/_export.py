"""Export a model to the safe format (spec + safetensors), from trusted code or a weights-only checkpoint."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from amulet.exceptions import ModelSpecError
from amulet.io._serialize import load_model, save_model
from amulet.io._spec import ArchitectureSpec, read_spec, spec_from_model
from amulet.io._weights import check_weights, read_weights

__all__ = ["export_model", "load_entry"]


def load_entry(entry: str) -> Any:
    """Import ``module:function`` (or ``path/to/file.py:function``) and return the function.

    This imports and runs the user's own (trusted) code; the service never calls it.

    Raises:
        ModelSpecError: malformed entry, module or attribute not found.
    """
    module_name, sep, attr = entry.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelSpecError(
            f"The entry must look like 'package.module:function' or 'file.py:function'; got {entry!r}."
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise ModelSpecError(f"The entry's file {str(path)!r} does not exist.")
            spec = importlib.util.spec_from_file_location(f"_amulet_export_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ModelSpecError(f"Cannot import {str(path)!r}.")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSpecError(f"Cannot import {module_name!r} for the entry {entry!r}: {exc}.") from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelSpecError(f"{module_name!r} has no attribute {attr!r} (entry {entry!r}).")
        target = getattr(target, part)
    return target


def export_model(
    output: str | Path | Sequence[str | Path],
    *,
    entry: str | None = None,
    architecture: str | None = None,
    config: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    weights: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write ``model.json`` + ``model.safetensors`` for a model given as trusted code or as weights.

    Two ways in:

    * ``entry="module:function"``: call the user's function (no arguments); it returns an ``nn.Module`` of a
      registered architecture (or a ``(module, spec)`` pair). The spec comes from ``architecture`` /
      ``config`` / ``input_shape`` / ``num_classes`` when given, from the returned pair, or from the model
      itself for Amulet's zoo models. ``weights``, if given, are loaded into the returned model first.
    * ``architecture`` + ``config`` + ``input_shape`` + ``num_classes`` + ``weights``: a weights-only
      checkpoint (safetensors or a torch zip state dict, read with ``weights_only=True``) is validated
      against the architecture and rewritten as safetensors.

    Args:
        output: Output directory, or a ``(spec_path, weights_path)`` pair.
        entry: ``package.module:function`` or ``path/to/file.py:function``.
        architecture: Registered architecture name.
        config: The architecture's config (JSON-compatible).
        input_shape: Input shape without the batch axis.
        num_classes: Number of classes.
        weights: Path of a weights-only checkpoint or safetensors file.

    Returns:
        ``(spec_path, weights_path)``.

    Raises:
        ModelSpecError: missing or inconsistent information, or weights that do not fit.
        UnsafeModelFileError: ``weights`` is a pickle or of an unknown format.
    """
    explicit: dict[str, Any] | None = None
    if architecture is not None:
        if input_shape is None or num_classes is None:
            raise ModelSpecError("With an architecture name, give the input shape and the number of classes as well.")
        explicit = {
            "architecture": architecture,
            "config": dict(config or {}),
            "input_shape": list(input_shape),
            "num_classes": num_classes,
        }
    elif config is not None:
        raise ModelSpecError("A config needs an architecture name (--architecture).")

    if entry is None:
        if explicit is None or weights is None:
            raise ModelSpecError(
                "Give either --entry module:function (trusted code returning the model), or --architecture with "
                "--input-shape, --num-classes, optional --config and --weights (a weights-only checkpoint)."
            )
        spec = read_spec(explicit)
        model = load_model(spec, weights)
        return save_model(model, output, spec)

    result = load_entry(entry)()
    returned_spec: ArchitectureSpec | None = None
    if isinstance(result, tuple) and len(result) == 2:
        result, returned_spec = result[0], read_spec(result[1])
    if not isinstance(result, nn.Module):
        raise ModelSpecError(f"The entry {entry!r} returned {type(result).__name__}, not a torch.nn.Module.")
    model = result
    if weights is not None:
        state = read_weights(weights)
        check_weights(model, state, architecture=type(model).__name__)
        expected = model.state_dict()
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    if explicit is not None:
        spec = read_spec(explicit)
    elif returned_spec is not None:
        spec = returned_spec
    else:
        spec = spec_from_model(model, input_shape=tuple(input_shape) if input_shape else None, num_classes=num_classes)
    return save_model(model, output, spec)
