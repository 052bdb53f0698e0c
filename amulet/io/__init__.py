"""Safe model serialization: an architecture spec (JSON) plus safetensors weights, never pickles.

* :class:`ArchitectureSpec`: registered architecture name, its config, input shape, number of classes.
* :func:`save_model` / :func:`load_model`: write and read ``model.json`` + ``model.safetensors``, checking
  the weights against the architecture (missing/unexpected keys, shapes, dtypes, NaN/Inf).
* :func:`read_weights`: weights from a path, bytes or stream (safetensors, or a flat state dict in a torch
  zip checkpoint read with ``weights_only=True``); pickle streams raise :class:`UnsafeModelFileError`.
* :func:`export_model` (``amulet export-model``): trusted code or a weights-only checkpoint -> the safe format.
* Graph uploads (any architecture, no pickle): :func:`inspect_model_file`, :func:`load_graph_model`,
  :func:`preflight_graph_model` for torch.export archives (``.pt2``) and ONNX files; :func:`export_graph_model`
  writes them from trusted code.
"""

from __future__ import annotations

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io._export import export_graph_model, export_model, load_entry
from amulet.io._graph import (
    GRAPH_FORMATS,
    GraphModel,
    GraphModelInfo,
    dp_sgd_refusal,
    inspect_model_file,
    load_graph_model,
    per_sample_gradients,
    reinitialize_parameters,
)
from amulet.io._preflight import preflight_graph_model
from amulet.io._serialize import SPEC_FILENAME, WEIGHTS_FILENAME, load_model, save_model
from amulet.io._spec import FORMAT_VERSION, ArchitectureSpec, build_model, read_spec, spec_from_model
from amulet.io._weights import (
    check_weights,
    detect_weights_format,
    read_weights,
    sha256_bytes,
    sha256_file,
)

__all__ = [
    "ArchitectureSpec",
    "FORMAT_VERSION",
    "GRAPH_FORMATS",
    "GraphModel",
    "GraphModelInfo",
    "ModelSpecError",
    "SPEC_FILENAME",
    "UnsafeModelFileError",
    "WEIGHTS_FILENAME",
    "build_model",
    "check_weights",
    "detect_weights_format",
    "dp_sgd_refusal",
    "export_graph_model",
    "export_model",
    "inspect_model_file",
    "load_entry",
    "load_graph_model",
    "load_model",
    "per_sample_gradients",
    "preflight_graph_model",
    "read_spec",
    "read_weights",
    "reinitialize_parameters",
    "save_model",
    "sha256_bytes",
    "sha256_file",
    "spec_from_model",
]
