"""Models uploaded as a graph: torch.export archives (``.pt2``) and ONNX files (``.onnx``), no pickle.

* :func:`inspect_model_file`: validate a file without running any payload and describe it
  (:class:`GraphModelInfo`: format, input shape, classes, parameter count, SHA-256, operators).
* :func:`load_graph_model`: validate, then load it as a trainable :class:`GraphModel` holding the uploaded
  weights.
* :func:`reinitialize_parameters`: the fresh initialisation every retrained row, shadow model and population
  member starts from (the rule is below).
* :func:`~amulet.io._preflight.preflight_graph_model` (its own module): input shape and classes against a
  dataset, a finite forward pass, gradients that reach the input.

Re-initialisation rule
----------------------
A retrained copy of an uploaded graph starts from the initialisation PyTorch gives each layer type:

1. every submodule that has a ``reset_parameters()`` method gets it called (``nn.Linear`` and ``nn.Conv*``:
   Kaiming-uniform weights and uniform biases; ``nn.LayerNorm``/``nn.GroupNorm``/``nn.BatchNorm*``: ones and
   zeros, BatchNorm's running statistics reset). A ``.pt2`` graph records its layers only as operators, so
   on loading, the parameters of each ``aten.linear``/``conv``/``layer_norm``/``group_norm``/``batch_norm``
   call are put back into a real layer of that type (same shapes, strides, groups, eps), which the graph
   keeps reading;
2. an ONNX normalisation node's scale and bias that onnx2torch passes as inputs (not a layer's parameters):
   ones and zeros, as the layer's own ``reset_parameters`` would;
3. a floating-point parameter that no such layer owns (a parameter of a custom module, or of a layer type
   without ``reset_parameters``): with two or more dimensions, Kaiming-uniform with ``a=sqrt(5)`` (the
   ``nn.Linear``/``nn.Conv`` default); one-dimensional and named ``*bias``: zeros; any other (a learned
   scale or slope of a custom activation, a scalar): it keeps the value it has in the upload, and a warning
   names it;
4. buffers not owned by such a layer (masks, constants) keep their uploaded values.

The draws come from torch's global generator, which callers seed (:func:`amulet.utils.seeded_init`), so the
same seed gives the same initial weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io._graph_layers import onnx_norm_initialisers, op_name, promote_initialisers, restore_layers
from amulet.io._onnx import convert_onnx, read_onnx
from amulet.io._pt2 import load_pt2_module, read_pt2_archive
from amulet.io._weights import sha256_file

__all__ = [
    "GRAPH_FORMATS",
    "GraphModel",
    "GraphModelInfo",
    "dp_sgd_refusal",
    "inspect_model_file",
    "load_graph_model",
    "per_sample_gradients",
    "reinitialize_parameters",
]

logger = logging.getLogger(__name__)

#: File suffixes of the graph formats.
GRAPH_FORMATS = {".pt2": "pt2", ".onnx": "onnx"}

#: Graph operators that carry the train/eval mode as a constant argument (position of that argument).
_MODE_ARGUMENT = {
    "aten.dropout.default": 2,
    "aten.feature_dropout.default": 2,
    "aten.alpha_dropout.default": 2,
    "aten.feature_alpha_dropout.default": 2,
    "aten.native_dropout.default": 2,
    "aten.batch_norm.default": 5,
}


@dataclass(frozen=True)
class GraphModelInfo:
    """What an uploaded graph model is (read from its exported signature; nothing of it was run).

    Attributes:
        format: ``"pt2"`` (torch.export archive) or ``"onnx"``.
        input_shape: Shape of one example (no batch axis).
        num_classes: Size of the output's last axis.
        num_parameters: Elements in the model's parameters.
        sha256: Hex SHA-256 of the file.
        operators: The graph's operators (aten overloads or ONNX op types), sorted.
    """

    format: Literal["pt2", "onnx"]
    input_shape: tuple[int, ...]
    num_classes: int
    num_parameters: int
    sha256: str
    operators: tuple[str, ...]


def _format_of(path: Path) -> Literal["pt2", "onnx"]:
    if not path.is_file():
        raise ModelSpecError(f"The model file {str(path)!r} does not exist.")
    with open(path, "rb") as handle:
        head = handle.read(4)
    suffix = path.suffix.lower()
    is_zip = head[:2] == b"PK"
    if suffix == ".pt2" or (suffix not in GRAPH_FORMATS and is_zip):
        if not is_zip:
            raise ModelSpecError(f"{path.name!r} is not a torch.export archive (a .pt2 file is a zip archive).")
        return "pt2"
    if suffix == ".onnx" or suffix not in GRAPH_FORMATS:
        if is_zip:
            raise ModelSpecError(f"{path.name!r} is a zip archive, not an ONNX model; name a .pt2 archive '.pt2'.")
        if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
            raise UnsafeModelFileError(
                f"{path.name!r} is a Python pickle, which Amulet never loads. Export the model with "
                "`amulet export-model` to a .pt2 archive."
            )
        return "onnx"
    raise ModelSpecError(f"Unsupported model file {path.name!r}: give a .pt2 (torch.export) or .onnx file.")


def inspect_model_file(path: str | Path) -> GraphModelInfo:
    """Validate a ``.pt2``/``.onnx`` file without running any payload, and describe it.

    ``.pt2``: every pickled member loads with ``torch.load(weights_only=True)``, no custom or script object,
    only known aten/prims operators, no code strings (see :mod:`amulet.io._pt2`). ``.onnx``: no external data
    outside the file's folder, the standard operator set, one input and one output.

    Raises:
        UnsafeModelFileError: unsafe content (map it to HTTP 415).
        ModelSpecError: malformed or unusable file (HTTP 422); the message names the problem and the fix.
    """
    path = Path(path)
    fmt = _format_of(path)
    digest = sha256_file(path)
    if fmt == "pt2":
        archive = read_pt2_archive(path)
        return GraphModelInfo(
            "pt2", archive.input_shape, archive.num_outputs, archive.num_parameters, digest, archive.operators
        )
    model = read_onnx(path)
    module = convert_onnx(model)
    promote_initialisers(module)
    n_params = sum(p.numel() for p in module.parameters())
    return GraphModelInfo("onnx", model.input_shape, model.num_outputs, n_params, digest, model.operators)


class GraphModel(nn.Module):
    """A classifier loaded from a ``.pt2``/``.onnx`` file: the graph module plus what was read about it.

    ``train()``/``eval()`` work (a ``.pt2`` graph's dropout and batch-norm calls are switched by rewriting
    their mode argument); ``reset_parameters()`` applies the documented re-initialisation rule.

    Attributes:
        graph: The ``torch.fx.GraphModule`` (parameters under ``graph.``).
        info: The file's :class:`GraphModelInfo`.
    """

    def __init__(self, graph: nn.Module, info: GraphModelInfo) -> None:
        super().__init__()
        self.graph = graph
        self.info = info
        self.num_classes = info.num_classes
        self.input_shape = info.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch."""
        return self.graph(x)

    def train(self, mode: bool = True) -> GraphModel:
        """Set the training mode, and the mode constants of the graph's dropout and batch-norm calls."""
        super().train(mode)
        fx_graph = getattr(self.graph, "graph", None)
        if self.info.format == "pt2" and fx_graph is not None:
            changed = False
            for node in fx_graph.nodes:
                index = _MODE_ARGUMENT.get(op_name(node.target)) if node.op == "call_function" else None
                if index is not None and len(node.args) > index and node.args[index] is not mode:
                    args = list(node.args)
                    args[index] = bool(mode)
                    node.args = tuple(args)
                    changed = True
            if changed:
                self.graph.recompile()  # type: ignore[operator]
        return self

    @property
    def has_dropout(self) -> bool:
        """Whether the graph draws random numbers in training (dropout)."""
        fx_graph = getattr(self.graph, "graph", None)
        if fx_graph is not None and any("dropout" in op_name(n.target) for n in fx_graph.nodes):
            return True
        return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in self.modules())

    @property
    def has_batchnorm(self) -> bool:
        """Whether the graph normalises with batch statistics (BatchNorm)."""
        fx_graph = getattr(self.graph, "graph", None)
        if fx_graph is not None and any("batch_norm" in op_name(n.target) for n in fx_graph.nodes):
            return True
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    def reset_parameters(self) -> None:
        """Re-initialise every parameter by the module's rule (see :func:`reinitialize_parameters`)."""
        reinitialize_parameters(self.graph, onnx_norm_initialisers(self.graph) if self.info.format == "onnx" else None)


def reinitialize_parameters(module: nn.Module, overrides: dict[str, str] | None = None) -> list[str]:
    """Re-initialise ``module``'s parameters as PyTorch initialises each layer type (the module docstring's rule).

    Args:
        module: The model (for an uploaded graph, its ``graph`` module).
        overrides: ``{parameter name: "ones"|"zeros"}`` for parameters whose layer is known from the graph
            rather than from a module (the scale and bias of an ONNX normalisation node).

    Returns:
        The names of the parameters that kept their values (no rule applies to them); they are also logged.
    """
    covered: set[int] = set()
    for sub in module.modules():
        if sub is module and isinstance(sub, GraphModel):
            continue
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset) and not isinstance(sub, GraphModel):
            reset()
            covered.update(id(p) for p in sub.parameters(recurse=False))
    kept = []
    with torch.no_grad():
        for name, p in module.named_parameters():
            if id(p) in covered or not p.dtype.is_floating_point:
                continue
            if overrides and name in overrides:
                (nn.init.ones_ if overrides[name] == "ones" else nn.init.zeros_)(p)
            elif p.dim() >= 2:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            elif name.rsplit(".", 1)[-1].endswith("bias"):
                nn.init.zeros_(p)
            else:
                kept.append(name)
    if kept:
        logger.warning(
            "re-initialisation: %d parameter(s) belong to no layer with a PyTorch initialisation and keep their "
            "uploaded values: %s",
            len(kept),
            ", ".join(kept[:10]),
        )
    return kept


def dp_sgd_refusal(model: nn.Module) -> str:
    """Why DP-SGD cannot train ``model`` (an uploaded graph with BatchNorm), or ``""`` when it can.

    BatchNorm normalises each sample with its batch's statistics, so a sample's gradient depends on the other
    samples of the batch: there is no per-sample gradient to clip, and DP-SGD's guarantee would not hold. A
    registered architecture has its BatchNorm layers swapped for GroupNorm before DP-SGD; an uploaded graph
    computes BatchNorm with a fixed operator, so it is refused instead.
    """
    if isinstance(model, GraphModel) and model.has_batchnorm:
        return (
            "DP-SGD cannot train the uploaded model: it uses BatchNorm, which mixes the samples of a batch, so no "
            "per-sample gradient exists to clip and the privacy guarantee would not hold. Export the model with "
            "GroupNorm (e.g. nn.GroupNorm(1, C) for an MLP) or LayerNorm instead of BatchNorm."
        )
    return ""


def per_sample_gradients(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Any = None
) -> dict[str, torch.Tensor]:
    """Per-sample gradients of the loss for every trainable parameter, through ``torch.func`` (any graph).

    Args:
        model: The model (an uploaded graph or any module that ``functional_call`` can run); its mode is used.
        x: A batch of inputs.
        y: Their labels.
        loss: ``loss(logits, labels) -> scalar`` for one sample (default: cross-entropy).

    Returns:
        ``{parameter name: tensor of shape (batch, *parameter shape)}``.

    Raises:
        ModelSpecError: the model uses BatchNorm (see :func:`dp_sgd_refusal`).
    """
    from torch.func import functional_call, grad, vmap

    reason = dp_sgd_refusal(model)
    if reason:
        raise ModelSpecError(reason)
    loss = loss or nn.functional.cross_entropy
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    randomness = "different" if getattr(model, "has_dropout", False) else "error"
    return vmap(grad(one), in_dims=(None, 0, 0), randomness=randomness)(params, x, y)


def load_graph_model(path: str | Path) -> GraphModel:
    """Validate (as :func:`inspect_model_file`), then load a ``.pt2``/``.onnx`` file as a trainable module.

    The module holds the uploaded weights and is in eval mode. No pickle payload of the file is run.

    Raises:
        UnsafeModelFileError, ModelSpecError: as :func:`inspect_model_file`.
    """
    path = Path(path)
    fmt = _format_of(path)
    digest = sha256_file(path)
    if fmt == "pt2":
        archive = read_pt2_archive(path)
        if not archive.dynamic_batch:
            raise ModelSpecError(
                "The exported model accepts only a fixed batch size; attacks and training need any batch size. "
                "Export it with a dynamic batch axis: torch.export.export(model, (x,), dynamic_shapes=({0: "
                "torch.export.Dim('batch', min=1)},)), which `amulet export-model` does."
            )
        graph = load_pt2_module(archive)
        # Building the layers draws their default initialisation: keep the caller's RNG untouched, so that a
        # seeded factory that loads the file on its first call initialises like every later call.
        with torch.random.fork_rng(devices=[]):
            restored = restore_layers(graph)
        if restored:
            logger.info("%s: layers restored from the graph: %s", path.name, ", ".join(restored))
        info = GraphModelInfo(
            "pt2", archive.input_shape, archive.num_outputs, archive.num_parameters, digest, archive.operators
        )
    else:
        onnx_model = read_onnx(path)
        with torch.random.fork_rng(devices=[]):
            graph = convert_onnx(onnx_model)  # type: ignore[assignment]
        promote_initialisers(graph)
        info = GraphModelInfo(
            "onnx",
            onnx_model.input_shape,
            onnx_model.num_outputs,
            sum(p.numel() for p in graph.parameters()),
            digest,
            onnx_model.operators,
        )
    for p in graph.parameters():
        p.requires_grad_(True)
    return GraphModel(graph, info).eval()
