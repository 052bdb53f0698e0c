"""Reading an ONNX model (``.onnx``) safely and converting it to a trainable torch module.

ONNX is protobuf: parsing it runs no code. The one way an ONNX file reaches outside itself is external data:
a tensor whose bytes live in another file named by a relative path. Every such path must stay inside the
upload's folder (no absolute path, no ``..``, no symbolic link out of it) and name an existing file; anything
else is refused before a byte of it is read.

The conversion uses onnx2torch (https://github.com/ENOT-AutoDL/onnx2torch): it maps each ONNX node to a
torch module (``Gemm`` -> ``nn.Linear``, ``Conv`` -> ``nn.Conv2d``, ``BatchNormalization`` -> ``nn.BatchNorm2d``,
...) inside a ``torch.fx.GraphModule`` whose initialisers become ordinary parameters, so the result trains,
re-initialises layer by layer and runs under ``torch.func`` like any PyTorch model. It is pure Python on top
of ``onnx`` and ``torch`` (no runtime or compiler to install), is maintained and released on PyPI, and covers
the operator set PyTorch's ONNX exporter emits for classifiers. onnxruntime, in contrast, only runs inference
(no gradients, no training), and onnx-tf/onnx2keras target other frameworks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from amulet.exceptions import ModelSpecError, UnsafeModelFileError

__all__ = ["OnnxModel", "convert_onnx", "read_onnx"]

logger = logging.getLogger(__name__)

#: Largest ONNX file read (protobuf's own limit is 2 GiB).
MAX_ONNX_BYTES = 2 * 1024**3 - 1
#: Operator domains of the standard ONNX operator set.
_STANDARD_DOMAINS = {"", "ai.onnx"}


@dataclass
class OnnxModel:
    """A validated ONNX model (external data, if any, loaded from inside the upload's folder)."""

    proto: Any  # onnx.ModelProto
    operators: tuple[str, ...]
    input_shape: tuple[int, ...]
    num_outputs: int


def _tensors_with_external_data(model: Any):
    """Every TensorProto of the model whose data is external (initialisers, constants, subgraphs, functions)."""
    from onnx import AttributeProto, TensorProto

    def of_graph(graph: Any):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from of_node(node)

    def of_node(node: Any):
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.SPARSE_TENSOR:
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            elif attr.type == AttributeProto.GRAPH:
                yield from of_graph(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from of_graph(g)

    for tensor in of_graph(model.graph):
        if tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL:
            yield tensor
    for function in model.functions:
        for node in function.node:
            for tensor in of_node(node):
                if tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL:
                    yield tensor


def _check_external_data(model: Any, folder: Path) -> bool:
    """Refuse external-data locations outside ``folder``; True when the model has external data."""
    root = folder.resolve()
    found = False
    for tensor in _tensors_with_external_data(model):
        found = True
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        where = f"the tensor {tensor.name!r} names the external data file {location!r}"
        if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location:
            raise UnsafeModelFileError(
                f"The ONNX model is refused: {where}, an absolute path. External data must be a file next to the "
                "model, inside the upload (or save the model with its weights inside: onnx.save_model(model, path, "
                "save_as_external_data=False))."
            )
        parts = Path(location.replace("\\", "/")).parts
        target = (root / location).resolve()
        if ".." in parts or not target.is_relative_to(root):
            raise UnsafeModelFileError(
                f"The ONNX model is refused: {where}, which points outside the upload's folder. External data must "
                "be a file next to the model (or save the model with its weights inside)."
            )
        if not target.is_file():
            raise ModelSpecError(f"The ONNX model's {where}, which does not exist next to the model.")
        for key in ("offset", "length"):
            if key in entries and (not entries[key].isdigit()):
                raise ModelSpecError(f"The ONNX model's external data of {tensor.name!r} has a bad {key!r}.")
    return found


def _dim(dim: Any) -> int | None:
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def read_onnx(path: str | Path) -> OnnxModel:
    """Parse and validate an ONNX model file.

    Raises:
        UnsafeModelFileError: external data outside the upload's folder, or operators of a custom domain.
        ModelSpecError: not an ONNX model, invalid per the ONNX checker, or not a one-input classifier.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"The model file {str(path)!r} does not exist.")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise ModelSpecError(f"The ONNX file is larger than {MAX_ONNX_BYTES} bytes.")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelSpecError(f"{path.name!r} is not an ONNX model: {type(exc).__name__}: {exc}.") from exc
    if not model.HasField("graph") or not model.graph.node:
        raise ModelSpecError(f"{path.name!r} is not an ONNX model (it has no graph).")
    if _check_external_data(model, path.parent):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise ModelSpecError(f"The ONNX model's external data could not be read: {exc}.") from exc
    custom = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in _STANDARD_DOMAINS})
    if custom:
        raise UnsafeModelFileError(
            f"The ONNX model is refused: it uses custom operators ({', '.join(custom[:8])}). Only the standard "
            "ONNX operator set is converted."
        )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelSpecError(f"The ONNX model is invalid: {exc}.") from exc
    initialisers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initialisers]
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelSpecError(
            f"The ONNX model takes {len(inputs)} input(s) and returns {len(outputs)} output(s); Amulet assesses "
            "classifiers with one input tensor (a batch of examples) and one output (the logits)."
        )
    in_dims = list(inputs[0].type.tensor_type.shape.dim)
    out_dims = list(outputs[0].type.tensor_type.shape.dim)
    input_shape = tuple(_dim(d) for d in in_dims[1:])
    if len(in_dims) < 2 or any(d is None for d in input_shape):
        raise ModelSpecError(
            f"The ONNX model's input {inputs[0].name!r} must have a batch axis and fixed other axes; its shape is "
            f"{[_dim(d) or d.dim_param or '?' for d in in_dims]}."
        )
    classes = _dim(out_dims[-1]) if len(out_dims) == 2 else None
    if classes is None:
        raise ModelSpecError(
            f"The ONNX model's output {outputs[0].name!r} must be (batch, classes) with a fixed number of classes; "
            f"its shape is {[_dim(d) or d.dim_param or '?' for d in out_dims]}."
        )
    operators = tuple(sorted({n.op_type for n in model.graph.node}))
    return OnnxModel(model, operators, input_shape, classes)  # type: ignore[arg-type]


def convert_onnx(model: OnnxModel) -> nn.Module:
    """The ONNX model as a trainable torch module (onnx2torch)."""
    from onnx2torch import convert

    try:
        module = convert(model.proto)
    except Exception as exc:
        raise ModelSpecError(
            f"The ONNX model could not be converted to PyTorch: {type(exc).__name__}: {str(exc)[:300]} (operators "
            f"{', '.join(model.operators)}). Export it from PyTorch with opset 13-17, or upload a torch.export "
            "archive (.pt2) instead."
        ) from exc
    return module
