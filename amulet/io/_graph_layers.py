"""Giving a loaded graph real layers, so that training and re-initialisation treat it as PyTorch would.

A ``.pt2`` graph records its layers only as ``aten`` calls on bare parameters: :func:`restore_layers` puts
the parameters of each ``linear``/``conv``/``layer_norm``/``group_norm``/``batch_norm`` call back into a real
layer of that type (same shapes, strides, groups, eps), which the graph keeps reading. onnx2torch keeps some
ONNX initialisers as buffers: :func:`promote_initialisers` makes them trainable, and
:func:`onnx_norm_initialisers` names those that are a normalisation node's scale or bias. The re-initialisation
rule these serve is in :mod:`amulet.io._graph`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["op_name", "onnx_norm_initialisers", "promote_initialisers", "restore_layers"]


def op_name(target: Any) -> str:
    """``aten.linear.default`` for an OpOverload, else the target's name."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}.{target._overloadname}"
    return str(getattr(target, "__name__", target))


def _arguments(node: Any) -> dict[str, Any]:
    """A call's arguments by schema name, defaults filled in."""
    schema = node.target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _attr_target(value: Any) -> str | None:
    if isinstance(value, torch.fx.Node) and value.op == "get_attr" and isinstance(value.target, str):
        return value.target
    return None


def _ints(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    values = tuple(int(v) for v in value)
    return values * n if len(values) == 1 else values


def _layer_for(node: Any, graph_module: nn.Module) -> tuple[str, nn.Module] | None:
    """The (owner path, fresh layer) whose parameters this aten call uses, or None."""
    name = op_name(node.target)
    args = _arguments(node)

    def param(key: str) -> torch.Tensor | None:
        target = _attr_target(args.get(key))
        return None if target is None else graph_module.get_parameter(target)

    weight_target = _attr_target(args.get("weight"))
    if weight_target is None or "." not in weight_target:
        return None
    owner = weight_target.rpartition(".")[0]
    weight = graph_module.get_parameter(weight_target)
    bias = param("bias")
    if name == "aten.linear.default" and weight.dim() == 2:
        return owner, nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    if name in ("aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default", "aten.conv1d.padding",
                "aten.conv2d.padding", "aten.conv3d.padding", "aten.convolution.default"):  # fmt: skip
        dims = weight.dim() - 2
        if dims not in (1, 2, 3):
            return None
        groups = int(args.get("groups", 1))
        padding = args.get("padding", 0)
        kwargs: dict[str, Any] = {
            "kernel_size": tuple(weight.shape[2:]),
            "stride": _ints(args.get("stride", 1), dims),
            "padding": padding if isinstance(padding, str) else _ints(padding, dims),
            "dilation": _ints(args.get("dilation", 1), dims),
            "groups": groups,
            "bias": bias is not None,
        }
        if args.get("transposed", False):
            cls: Any = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
            kwargs["output_padding"] = _ints(args.get("output_padding", 0), dims)
            return owner, cls(weight.shape[0], weight.shape[1] * groups, **kwargs)
        conv: Any = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
        return owner, conv(weight.shape[1] * groups, weight.shape[0], **kwargs)
    if name == "aten.layer_norm.default":
        shape = tuple(int(v) for v in args["normalized_shape"])
        return owner, nn.LayerNorm(shape, eps=float(args.get("eps", 1e-5)), bias=bias is not None)
    if name == "aten.group_norm.default":
        return owner, nn.GroupNorm(int(args["num_groups"]), weight.shape[0], eps=float(args.get("eps", 1e-5)))
    if name == "aten.batch_norm.default":
        running = _attr_target(args.get("running_mean"))
        rank = node.args[0].meta.get("val").dim() if "val" in node.args[0].meta else 2
        norm: Any = {4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank, nn.BatchNorm1d)
        momentum = args.get("momentum")
        return owner, norm(
            weight.shape[0],
            eps=float(args.get("eps", 1e-5)),
            momentum=None if momentum is None else float(momentum),
            track_running_stats=running is not None,
        )
    return None


def restore_layers(graph_module: nn.Module) -> list[str]:
    """Replace the plain containers of a .pt2 graph's layer parameters by real layers; return their paths."""
    fx_graph = getattr(graph_module, "graph", None)
    if fx_graph is None:
        return []
    restored = []
    for node in fx_graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        try:
            found = _layer_for(node, graph_module)
        except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
            found = None
        if found is None:
            continue
        owner, layer = found
        try:
            container = graph_module.get_submodule(owner)
        except AttributeError:
            continue
        if type(container) is not nn.Module or list(container.children()):
            continue  # already a layer, or a module with children: leave it
        old = container.state_dict(keep_vars=True)
        new = layer.state_dict(keep_vars=True)
        if set(old) != set(new) or any(old[k].shape != new[k].shape for k in old):
            continue
        with torch.no_grad():
            for key, value in old.items():
                new[key].copy_(value)
        for pname, p in layer.named_parameters():
            p.requires_grad_(old[pname].requires_grad)
        parent_name, _, child = owner.rpartition(".")
        parent = graph_module.get_submodule(parent_name) if parent_name else graph_module
        setattr(parent, child, layer)
        restored.append(f"{owner} ({type(layer).__name__})")
    return restored


def promote_initialisers(graph_module: nn.Module) -> None:
    """Make the floating-point ONNX initialisers that onnx2torch keeps as buffers trainable parameters.

    onnx2torch turns an initialiser into a layer's parameter when one node owns it (``Gemm`` -> ``nn.Linear``);
    an initialiser fed to a node as a plain input (a ``LayerNormalization`` whose scale the exporter shared with
    another one of equal value) stays a buffer under ``initializers``, which training would never update.
    """
    holder = getattr(graph_module, "initializers", None)
    if not isinstance(holder, nn.Module):
        return
    for name, buffer in list(holder.named_buffers(recurse=False)):
        if buffer.dtype.is_floating_point:
            del holder._buffers[name]
            holder.register_parameter(name, nn.Parameter(buffer.detach().clone()))


def onnx_norm_initialisers(graph_module: nn.Module) -> dict[str, str]:
    """``{parameter: "ones"|"zeros"}`` for ONNX initialisers that are the scale/bias of a normalisation node
    (onnx2torch's ``OnnxLayerNorm`` and friends take them as inputs), so they re-initialise as the layer would."""
    fx_graph = getattr(graph_module, "graph", None)
    out: dict[str, str] = {}
    if fx_graph is None:
        return out
    for node in fx_graph.nodes:
        if node.op != "call_module":
            continue
        kind = type(graph_module.get_submodule(node.target)).__name__
        if "Norm" not in kind:
            continue
        for position, value in ((1, "ones"), (2, "zeros")):
            arg = node.args[position] if len(node.args) > position else None
            # The exporter routes a shared initialiser through Identity nodes: follow them back.
            while (
                isinstance(arg, torch.fx.Node)
                and arg.op == "call_module"
                and isinstance(arg.target, str)
                and "Identity" in type(graph_module.get_submodule(arg.target)).__name__
                and arg.args
            ):
                arg = arg.args[0]
            target = _attr_target(arg)
            if target:
                out[target] = value
    return out
