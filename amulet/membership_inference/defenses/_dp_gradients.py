"""Per-sample gradients for DP-SGD, and their clipped sum, with ghost clipping where the layers allow.

DP-SGD clips every sample's gradient to norm ``C`` and sums them (Opacus' factor ``min(1, C / (||g_i|| + 1e-6))``
with the norm over all trainable parameters). Two ways to get there:

* **per-sample gradients** (:func:`clipped_sum_per_sample`): ``torch.func``, one ``vmap`` of ``grad`` over the
  batch (the engine's path, :mod:`._stacked_dpsgd`), which materialises a gradient per sample: B copies of the
  model's parameters;
* **ghost clipping** (:func:`clipped_sum_ghost`; Goodfellow 2015, Li et al. ICLR 2022): when every trainable
  parameter belongs to an ``nn.Linear`` layer, sample i's gradient of a layer is ``d_i a_i^T`` (its output
  gradient times its input), so its squared norm is ``||a_i||^2 ||d_i||^2`` (2-D inputs; for a sequence,
  ``sum_ts (a_t . a_s)(d_t . d_s)``) and its bias's is ``||d_i||^2``: the norms come from one ordinary
  backward pass, and the clipped sum is one matrix product per layer, ``(c * D)^T A``. No per-sample gradient is
  materialised. A forward hook on each Linear layer records its input and output during that forward pass
  (removed right after it); any other layer with trainable parameters, a Linear layer called more than once
  or not at all, or parameters shared between layers fall back to per-sample gradients.

Both give the same clipped sum to float rounding (``tests/membership_inference/test_dp_ghost_clipping.py``).
The Opacus feeders (:func:`set_func_grad_samples`, :func:`set_graph_grad_samples`) put per-sample gradients
where Opacus' optimizer reads them, for the training that goes through Opacus (secure RNG, ``per_sample="hooks"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

__all__ = [
    "ClippedSum",
    "clipped_sum",
    "clipped_sum_ghost",
    "clipped_sum_per_sample",
    "ghost_layers",
    "per_sample_losses",
    "set_func_grad_samples",
    "set_graph_grad_samples",
]

#: What a clipped-sum function returns: (parameter -> sum of the clipped per-sample gradients, per-sample
#: gradient norms before clipping, mean loss of the batch).
ClippedSum = tuple[dict[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]


def per_sample_losses(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each sample's loss, ``criterion`` on that sample alone (what its per-sample gradient is the gradient of).

    A plain ``nn.CrossEntropyLoss`` (no class weights) is evaluated once with ``reduction="none"``, which is the
    same number; any other criterion is evaluated on every sample by ``vmap``.
    """
    if type(criterion) is nn.CrossEntropyLoss and criterion.weight is None:
        return F.cross_entropy(
            logits, y, reduction="none", ignore_index=criterion.ignore_index, label_smoothing=criterion.label_smoothing
        )
    return vmap(lambda o, t: criterion(o.unsqueeze(0), t.unsqueeze(0)))(logits, y)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def ghost_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The ``nn.Linear`` layers that hold every trainable parameter of ``model``, or None if any lies elsewhere."""
    trainable = {id(p) for p in _trainable(model)}
    layers: list[nn.Linear] = []
    seen: list[int] = []
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if type(module) is not nn.Linear:
            return None
        layers.append(module)
        seen.extend(id(p) for p in own)
    if len(seen) != len(set(seen)) or set(seen) != trainable:
        return None  # a parameter shared by two layers
    return layers


def _clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Opacus' per-sample clip factor ``min(1, C / (||g_i|| + 1e-6))``."""
    return (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)


def _empty(model: nn.Module, x: torch.Tensor) -> ClippedSum:
    """An empty Poisson batch: no sample, a zero sum (Opacus then adds noise to it)."""
    summed: dict[torch.Tensor, torch.Tensor] = {p: torch.zeros_like(p) for p in _trainable(model)}
    return summed, torch.zeros(0, device=x.device), torch.zeros((), device=x.device)


def clipped_sum_per_sample(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: nn.Module,
    max_grad_norm: float,
    *,
    grads_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, nn.Module], dict[str, torch.Tensor]] | None = None,
) -> ClippedSum:
    """The clipped sum from materialised per-sample gradients (``torch.func``, as the engine computes them).

    Args:
        model: The model (its current mode: dropout draws differently for every sample, as in a batch).
        x: Inputs of the batch.
        y: Labels.
        criterion: Loss with mean reduction; each sample's gradient is that of ``criterion`` on it alone.
        max_grad_norm: Clipping norm C.
        grads_fn: ``(model, x, y, criterion) -> {name: (B, *shape)}`` per-sample gradients (default: one
            ``vmap`` of ``grad_and_value`` over the batch); an uploaded graph passes its own.
    """
    if len(x) == 0:
        return _empty(model, x)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if grads_fn is None:
        grads, losses = _vmap_grads(model, x, y, criterion)
    else:
        grads = grads_fn(model, x, y, criterion)
        # The reported loss only: a forward pass that must not move the generator dropout draws from.
        with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            losses = per_sample_losses(criterion, model(x), y)
    flat = [grads[name].reshape(len(x), -1) for name, _ in named]
    norms = torch.stack([g.norm(2, dim=-1) for g in flat], dim=1).norm(2, dim=1)
    clip = _clip_factors(norms, max_grad_norm)
    summed: dict[torch.Tensor, torch.Tensor] = {
        p: torch.einsum("i,i...", clip.to(p.dtype), grads[name].to(p.dtype)) for name, p in named
    }
    return summed, norms.detach(), losses.detach().mean()


def _vmap_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-sample gradients (name -> (B, *shape)) and losses, one ``vmap`` of ``grad_and_value`` over the batch."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return criterion(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    # Dropout draws differently for each sample (as it does in a batched forward pass).
    randomness = "different" if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()) else "error"
    grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0), randomness=randomness)(params, x, y)
    return grads, losses


def clipped_sum_ghost(
    model: nn.Module,
    layers: list[nn.Linear],
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: nn.Module,
    max_grad_norm: float,
) -> ClippedSum | None:
    """The clipped sum by ghost clipping over ``layers`` (:func:`ghost_layers`); None where it does not apply.

    One forward pass records every layer's input and output, one backward pass gives the gradient of the summed
    per-sample losses with respect to the outputs (sample i's rows are its own loss's gradient), from which the
    norms and the clipped sum follow without a per-sample gradient. Returns None (the caller falls back to
    per-sample gradients) when a layer was not called exactly once in the forward pass.
    """
    if len(x) == 0:
        return _empty(model, x)
    records: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {layer: [] for layer in layers}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records[module].append((inputs[0], output))

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    if any(len(r) != 1 for r in records.values()):
        return None
    losses = per_sample_losses(criterion, logits, y)
    outputs = [records[layer][0][1] for layer in layers]
    output_grads = torch.autograd.grad(losses.sum(), outputs)
    n = len(x)
    squared = torch.zeros(n, device=x.device, dtype=logits.dtype)
    flat: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []
    for layer, d in zip(layers, output_grads):
        a = records[layer][0][0].detach()
        a3, d3 = a.reshape(n, -1, a.shape[-1]), d.reshape(n, -1, d.shape[-1])
        if layer.weight.requires_grad:
            if a3.shape[1] == 1:
                squared += a3.square().sum((1, 2)) * d3.square().sum((1, 2))
            else:
                squared += ((a3 @ a3.transpose(1, 2)) * (d3 @ d3.transpose(1, 2))).sum((1, 2))
        if layer.bias is not None and layer.bias.requires_grad:
            squared += d3.sum(1).square().sum(1)
        flat.append((layer, a3, d3))
    norms = squared.clamp_min(0).sqrt()
    clip = _clip_factors(norms, max_grad_norm)
    summed: dict[torch.Tensor, torch.Tensor] = {}
    for layer, a3, d3 in flat:
        weighted = (d3 * clip.view(n, 1, 1)).reshape(-1, d3.shape[-1])
        if layer.weight.requires_grad:
            summed[layer.weight] = weighted.T @ a3.reshape(-1, a3.shape[-1])
        if layer.bias is not None and layer.bias.requires_grad:
            summed[layer.bias] = weighted.sum(0)
    return summed, norms.detach(), losses.detach().mean()


def clipped_sum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    criterion: nn.Module,
    max_grad_norm: float,
    *,
    layers: list[nn.Linear] | None = None,
    grads_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, nn.Module], dict[str, torch.Tensor]] | None = None,
) -> ClippedSum:
    """The sum of the clipped per-sample gradients of ``criterion`` on (x, y).

    Ghost clipping over ``layers`` (:func:`ghost_layers` of ``model``, computed once per training) when given and
    applicable to this forward pass, per-sample gradients otherwise (``grads_fn``, default ``vmap``).
    """
    if layers is not None and grads_fn is None:
        result = clipped_sum_ghost(model, layers, x, y, criterion, max_grad_norm)
        if result is not None:
            return result
    return clipped_sum_per_sample(model, x, y, criterion, max_grad_norm, grads_fn=grads_fn)


def set_graph_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Put the per-sample gradients of an uploaded graph in ``p.grad_sample``, where Opacus' optimizer reads them.

    Each sample's gradient is that of its own loss, ``criterion`` on the one sample: what Opacus' hooks store
    for a mean-reduced loss (they undo the mean), so clipping, noise and the division by the expected batch
    size are the same. Returns the batch's loss (for the progress report).
    """
    # Lazy for its import cost: amulet.io loads every model-file reader (ONNX, torch.export) on import.
    from amulet.io._graph import per_sample_gradients

    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if len(x) == 0:  # an empty Poisson batch: no sample, Opacus adds noise to a zero sum
        for _, p in params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)  # type: ignore[attr-defined]
        return torch.zeros((), device=x.device)
    grads = per_sample_gradients(model, x, y, loss=criterion)
    for name, p in params:
        p.grad_sample = grads[name]  # type: ignore[attr-defined]
    # The reported loss only: a second forward pass, which must not move the generator dropout draws from.
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        return criterion(model(x), y)


def set_func_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """Put ``torch.func`` per-sample gradients of a module in ``p.grad_sample``, where Opacus' optimizer reads them.

    For :func:`dp_train`'s path through Opacus with ``secure_rng``: one ``vmap`` of ``grad_and_value`` over
    the batch instead of Opacus' forward and backward hooks, each sample's gradient being that of
    ``criterion`` on the one sample (what Opacus' hooks store for a mean-reduced loss). Opacus' optimizer then
    clips, adds noise and steps as it does for gradients from its hooks. Returns the batch's mean loss.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if len(x) == 0:  # an empty Poisson batch: no sample, Opacus adds noise to a zero sum
        for p in params.values():
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)  # type: ignore[attr-defined]
        return torch.zeros((), device=x.device)
    grads, losses = _vmap_grads(model, x, y, criterion)
    for name, p in params.items():
        p.grad_sample = grads[name]  # type: ignore[attr-defined]
    return losses.mean()
