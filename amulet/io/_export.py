"""Export a model to the safe format (spec + safetensors), from trusted code or a weights-only checkpoint."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amulet.exceptions import ModelSpecError
from amulet.io._graph import inspect_model_file, load_graph_model
from amulet.io._preflight import preflight_graph_model
from amulet.io._serialize import load_model, save_model
from amulet.io._spec import ArchitectureSpec, read_spec, spec_from_model
from amulet.io._weights import check_weights, read_weights
from amulet.settings import get_settings
from amulet.utils import load_data

__all__ = ["export_graph_model", "export_model", "load_entry"]


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


def _dataset_shape(dataset: str) -> tuple[tuple[int, ...], int]:
    """Input shape and number of classes of a built-in dataset (loaded offline, as an assessment loads it)."""
    try:
        data = load_data(get_settings().resolved_data_dir, dataset)
    except ValueError as exc:  # InvalidParameterError: unknown dataset name, listing the known ones
        raise ModelSpecError(f"Unknown dataset {dataset!r}: {exc}") from exc
    # The arrays when the loader keeps them (as the assessment reads them), else the first training example.
    shape = np.asarray(data.x_train).shape[1:] if data.x_train is not None else tuple(data.train_set[0][0].shape)
    return tuple(int(v) for v in shape), int(data.num_classes)


def export_graph_model(
    output: str | Path,
    *,
    entry: str | None = None,
    model: nn.Module | None = None,
    input_shape: Sequence[int] | None = None,
    dataset: str | None = None,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    onnx: bool = False,
    opset: int = 17,
) -> list[Path]:
    """Export a model as a torch.export archive (``.pt2``) and optionally ONNX, ready to upload.

    The model comes from trusted code (``entry``, called without arguments) or is given (``model``). It is
    exported in eval mode with a dynamic batch axis, then the written files are read back exactly as an
    upload is (:func:`amulet.io.inspect_model_file`, :func:`amulet.io.preflight_graph_model`), so a file
    that Amulet would refuse fails here, with the reason.

    Args:
        output: ``model.pt2`` (``onnx=True`` also writes ``model.onnx`` next to it) or ``model.onnx`` (ONNX only),
            or a directory (``model.pt2`` inside).
        entry: ``package.module:function`` or ``path/to/file.py:function`` returning the ``nn.Module``.
        model: The module itself (instead of ``entry``).
        input_shape: Shape of one example (no batch axis), e.g. ``(1, 28, 28)``.
        dataset: A built-in dataset whose input shape and class count to use (e.g. ``"census"``).
        num_classes: Expected number of classes (checked; taken from ``dataset`` when given).
        weights: Weights-only state dict (safetensors or torch zip) to load into the model first.
        onnx: Also write an ONNX file.
        opset: ONNX opset.

    Returns:
        The written paths.

    Raises:
        ModelSpecError: no model, no input shape, a model that does not fit the shape/classes, or one that
            torch.export cannot capture; UnsafeModelFileError: the export would be refused on upload (e.g. it
            uses a custom operator).
    """
    if (entry is None) == (model is None):
        raise ModelSpecError("Give the model as --entry module:function (or pass model=...), exactly one of them.")
    if dataset is not None:
        shape, classes = _dataset_shape(dataset)
        if input_shape is not None and tuple(input_shape) != shape:
            raise ModelSpecError(
                f"--input-shape {list(input_shape)} contradicts the dataset {dataset!r}'s {list(shape)}."
            )
        input_shape = shape
        num_classes = num_classes if num_classes is not None else classes
    if input_shape is None:
        raise ModelSpecError("Give the input shape of one example: --dataset NAME or --input-shape 1,28,28.")
    if model is None:
        result = load_entry(entry)()  # type: ignore[arg-type]
        model = result[0] if isinstance(result, tuple) else result
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"The entry {entry!r} returned {type(model).__name__}, not a torch.nn.Module.")
    if weights is not None:
        state = read_weights(weights)
        check_weights(model, state, architecture=type(model).__name__)
        expected = model.state_dict()
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    model = model.cpu().eval()
    shape = tuple(int(v) for v in input_shape)
    example = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:
        raise ModelSpecError(
            f"The model fails on a batch of shape {list(example.shape)} (input shape {list(shape)}): "
            f"{type(exc).__name__}: {str(exc)[:300]}. Build it for that input shape."
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ModelSpecError(
            f"The model returns {getattr(out, 'shape', type(out).__name__)} for a batch of shape "
            f"{list(example.shape)}; it must return logits of shape (batch, classes)."
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise ModelSpecError(f"The model outputs {out.shape[1]} logits but {num_classes} classes are expected.")
    output = Path(output)
    if output.suffix.lower() not in (".pt2", ".onnx"):
        output = output / "model.pt2"
    output.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if output.suffix.lower() == ".pt2":
        batch = torch.export.Dim("batch", min=1)
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False)
        except Exception as exc:
            raise ModelSpecError(
                f"torch.export could not capture the model: {type(exc).__name__}: {str(exc)[:400]}. Data-dependent "
                "Python control flow must be written with torch operations (see the torch.export documentation)."
            ) from exc
        torch.export.save(program, output)
        written.append(output)
    if onnx or output.suffix.lower() == ".onnx":
        onnx_path = output.with_suffix(".onnx")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(onnx_path),
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            )
        except Exception as exc:
            raise ModelSpecError(f"The ONNX export failed: {type(exc).__name__}: {str(exc)[:400]}.") from exc
        written.append(onnx_path)
    for path in written:
        info = inspect_model_file(path)
        preflight_graph_model(load_graph_model(path), shape, int(num_classes or info.num_classes))
    return written
