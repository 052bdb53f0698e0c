"""Pre-flight: before anything is queued, :func:`preflight` checks that the model fits the data.

The dataset is loaded the way the worker loads it (``amulet.assess`` ``load_bundle``), the architecture is
built for its input shape and class count (``architecture_spec`` and ``amulet.io.build_model`` on the meta
device, so nothing is allocated), one forward pass on meta tensors checks the output, an uploaded model's
declared input shape and class count are compared with the dataset's and its weights are checked against the
architecture (``amulet.io.load_model``), and the model's size is bounded. An uploaded exported graph
(``.pt2``/``.onnx``, resolved to ``model.file``) is checked by ``amulet.io.preflight_graph_model`` against the
dataset's input shape and class count: it validates the file again, then runs a finite forward pass on a batch
and checks that gradients reach the input. Each mismatch is a 422 naming it and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from amulet.assess import architecture_spec, load_bundle
from amulet.exceptions import AmuletError, ModelSpecError, UnsafeModelFileError
from amulet.io import build_model, load_model, preflight_graph_model
from backend.core.config import Settings, get_settings
from backend.intake import (
    IntakeError,
    setting_limit,
)
from backend.planning.bounds import check_widths
from backend.planning.uploads import UploadedModel

__all__ = ["PreflightInfo", "preflight"]


@dataclass
class PreflightInfo:
    """What pre-flight learnt that the cost estimate uses."""

    n_parameters: int | None
    n_train: int | None


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in shape) + "]"


def _check_upload(uploaded: UploadedModel, bundle: Any, dataset: str) -> None:
    """The uploaded model's declared input shape and class count against the dataset's (checked at upload
    against the weights by a forward pass, so they are what the weights expect; for an exported graph, read
    from its exported signature)."""
    declared = tuple(int(v) for v in uploaded.spec.get("input_shape") or ())
    want = tuple(int(v) for v in bundle.input_shape)
    # An exported graph is re-exported with the dataset's shape; registry weights are retrained on its features.
    fix = (
        "Export the model again for this dataset (`amulet export-model ... --dataset`, "
        f"input_shape {_shape_text(want)})"
        if uploaded.graph
        else f"Upload a model trained on this dataset's features (input_shape {_shape_text(want)})"
    )
    where = "model.file" if uploaded.graph else "model.weights"
    if declared and declared != want:
        if len(declared) == 1 and len(want) == 1:
            encoding = " after encoding (categorical columns one-hot encoded)" if bundle.modality == "tabular" else ""
            message = (
                f"{where}: the first layer of the uploaded model {uploaded.name!r} expects {declared[0]} input "
                f"features but dataset {dataset!r} has {want[0]}{encoding}. {fix}, or assess the model on the "
                "data it was trained on."
            )
        else:
            message = (
                f"{where}: the uploaded model {uploaded.name!r} expects inputs of shape {_shape_text(declared)} "
                f"but dataset {dataset!r} has inputs of shape {_shape_text(want)}. "
                + (
                    f"{fix}, or assess the model on the data it was trained on."
                    if uploaded.graph
                    else "Upload a model built for this input shape, or assess the model on the data it was trained on."
                )
            )
        raise IntakeError("spec.model.id", message)
    classes = uploaded.spec.get("num_classes")
    if isinstance(classes, int) and classes != bundle.num_classes:
        raise IntakeError(
            "spec.model.id",
            f"{where}: the uploaded model {uploaded.name!r} has {classes} outputs but dataset {dataset!r} has "
            f"{bundle.num_classes} classes. Upload a model with one output per class of this dataset's label, or "
            "assess the model on the data it was trained on.",
        )


def preflight(
    spec: Any,
    *,
    dataset_name: str | None = None,
    uploaded: UploadedModel | None = None,
    settings: Settings | None = None,
) -> PreflightInfo:
    """Check that the spec's model fits its dataset, before anything is queued (no training, nothing allocated).

    Args:
        spec: A validated :class:`amulet.assess.AssessmentSpec` (server paths resolved).
        dataset_name: How messages name the dataset (an upload's file name; default: the spec's source).
        uploaded: The uploaded model the spec references, if any (its declared input shape and classes).
        settings: The bounds (``max_model_parameters``, ``max_model_layers``, ``max_layer_width``); default:
            the process settings.

    Raises:
        IntakeError: 422 naming the field, the mismatch and the fix: a dataset that cannot be loaded, a
            model config out of bounds, an architecture that cannot take the dataset's inputs or does not give
            one output per class, an uploaded model built for another input shape or class count, weights that
            do not fit the architecture, or a model larger than the ``max_model_parameters`` setting.

    Returns:
        What the cost estimate needs: the model's parameter count and the number of training rows.
    """
    settings = settings or get_settings()
    dataset = dataset_name or str(spec.dataset.source)
    try:
        bundle = load_bundle(spec.dataset)  # what the worker will load (cached per process)
    except (AmuletError, ValueError, KeyError, OSError) as exc:
        raise IntakeError("spec.dataset", f"dataset: {dataset!r} could not be loaded: {exc}") from exc
    graph_file = getattr(spec.model, "file", None)
    n_train = _n_rows(bundle)
    if graph_file:
        _preflight_graph(str(graph_file), bundle, dataset, uploaded, settings)
        declared = int(uploaded.spec.get("num_parameters") or 0) if uploaded is not None else 0
        return PreflightInfo(n_parameters=declared or None, n_train=n_train)
    arch = architecture_spec(spec.model, bundle)
    check_widths(arch["config"], settings)
    if uploaded is not None:
        _check_upload(uploaded, bundle, dataset)
    where = "spec.model.config" if spec.model.config else "spec.model"
    try:
        model = build_model(arch, device="meta")
    except (RuntimeError, NotImplementedError):  # a factory that cannot build on the meta device
        model = None
    except ModelSpecError as exc:
        if "input_shape" in str(exc):  # the architecture cannot take this dataset's inputs at all
            raise _modality_error(arch, bundle, dataset, exc) from exc
        raise IntakeError(where, f"model: {exc}") from exc
    n_parameters: int | None = None
    if model is not None:
        n_parameters = sum(p.numel() for p in model.parameters())
        if n_parameters > settings.max_model_parameters:
            raise IntakeError(
                where,
                f"model: architecture {arch['architecture']!r} with config {arch['config']} has {n_parameters:,} "
                f"parameters for dataset {dataset!r}, more than "
                f"{setting_limit(settings.max_model_parameters, 'max_model_parameters')}. "
                "Use smaller layers (e.g. the capacities m1..m4).",
            )
        _check_forward(model, arch, bundle, dataset)
    weights = spec.model.weights
    if weights:
        try:
            load_model(arch, weights)
        except (ModelSpecError, UnsafeModelFileError) as exc:
            raise IntakeError("spec.model.id", f"model.weights: {exc}") from exc
    return PreflightInfo(n_parameters=n_parameters, n_train=n_train)


def _n_rows(bundle: Any) -> int | None:
    try:
        return len(bundle.train)
    except TypeError:  # a split without a length: the estimate falls back to the spec's training_size
        return None


def _preflight_graph(path: str, bundle: Any, dataset: str, uploaded: UploadedModel | None, settings: Settings) -> None:
    """An exported graph (``model.file``) against the dataset: declared shape and classes, then the engine's
    pre-flight (validated again before it loads: finite forward pass on a batch, gradients reach the input)."""
    field = "spec.model.id" if uploaded is not None else "spec.model.file"
    if uploaded is not None:
        _check_upload(uploaded, bundle, dataset)
        n_parameters = int(uploaded.spec.get("num_parameters") or 0)
        if n_parameters > settings.max_model_parameters:
            raise IntakeError(
                field,
                f"model.file: the uploaded model {uploaded.name!r} has {n_parameters:,} parameters, more than "
                f"{setting_limit(settings.max_model_parameters, 'max_model_parameters')}. Upload a smaller model.",
            )
    name = f"the uploaded model {uploaded.name!r}" if uploaded is not None else "the model"
    try:
        preflight_graph_model(path, tuple(int(v) for v in bundle.input_shape), int(bundle.num_classes))
    except (ModelSpecError, UnsafeModelFileError) as exc:
        raise IntakeError(field, f"model.file: {name} does not fit dataset {dataset!r}: {exc}") from exc


def _modality_error(arch: dict[str, Any], bundle: Any, dataset: str, exc: Exception) -> IntakeError:
    return IntakeError(
        "spec.model.architecture",
        f"model.architecture: {arch['architecture']!r} cannot take dataset {dataset!r}'s inputs of shape "
        f"{_shape_text(tuple(bundle.input_shape))} ({bundle.modality}): {exc} Pick an architecture for this "
        "modality (linearnet for tabular data; cnn, vgg or resnet for images).",
    )


def _check_forward(model: Any, arch: dict[str, Any], bundle: Any, dataset: str) -> None:
    """One forward pass on meta tensors of the dataset's input shape: it runs and gives one logit per class."""
    shape = tuple(bundle.input_shape)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape, device="meta"))
    except NotImplementedError:  # an operation without a meta kernel: the worker's run will tell
        return
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise _modality_error(arch, bundle, dataset, exc) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, bundle.num_classes):
        got = _shape_text(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        raise IntakeError(
            "spec.model.architecture",
            f"model.architecture: {arch['architecture']!r} gives outputs of shape {got} for 2 inputs, but dataset "
            f"{dataset!r} has {bundle.num_classes} classes (expected [2, {bundle.num_classes}]).",
        )
