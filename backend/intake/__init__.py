"""Validation of uploaded models and datasets, before anything is stored or queued.

One module per kind of upload: :mod:`~backend.intake.models` (architecture spec plus weights),
:mod:`~backend.intake.graph_models` (exported ``.pt2``/ONNX graphs), :mod:`~backend.intake.datasets`;
:mod:`~backend.intake.checks` holds what they and the assessment planning share.

Every failure is an :class:`IntakeError` carrying the HTTP status, the request field it concerns and a
message that says what is wrong and how to fix it. Nothing here unpickles: pickle files are recognised by
their first bytes and refused, safetensors are parsed by ``amulet.io``, state_dicts are only read through
``torch.load(weights_only=True)`` (inside ``amulet.io``), and NPZ members are read with
``allow_pickle=False``. Exported graphs (torch.export ``.pt2``, ONNX) are only ever opened by
``amulet.io.inspect_model_file`` (which checks every pickled member, operator and external-data reference
before anything is loaded) and ``amulet.io.preflight_graph_model`` (which validates again, then loads).
"""

from __future__ import annotations

from backend.intake.checks import (
    IntakeError,
    check_defense_rows,
    check_finite_numbers,
    check_layer_lists,
    check_planned_rows,
    non_finite_number,
    setting_limit,
)
from backend.intake.datasets import DATASET_FORMATS, DatasetInfo, dataset_format, upload_message, validate_dataset
from backend.intake.graph_models import (
    EXPORT_HINT,
    GRAPH_PICKLE_MESSAGE,
    GraphModelUpload,
    graph_model_format,
    validate_graph_model,
)
from backend.intake.models import PICKLE_MESSAGE, ModelInfo, parse_architecture_spec, validate_model, weights_format

__all__ = [
    "DATASET_FORMATS",
    "EXPORT_HINT",
    "GRAPH_PICKLE_MESSAGE",
    "PICKLE_MESSAGE",
    "DatasetInfo",
    "GraphModelUpload",
    "IntakeError",
    "ModelInfo",
    "check_defense_rows",
    "check_finite_numbers",
    "check_layer_lists",
    "check_planned_rows",
    "dataset_format",
    "graph_model_format",
    "non_finite_number",
    "parse_architecture_spec",
    "setting_limit",
    "upload_message",
    "validate_dataset",
    "validate_graph_model",
    "validate_model",
    "weights_format",
]
