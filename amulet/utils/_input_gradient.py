"""Gradients with respect to a model's inputs (PGD's inner step): by hand for an MLP chain, else by autograd.

PGD asks, ten to forty times per batch, for the gradient of the loss with respect to the inputs only, with the
model frozen in eval mode. For a model that is a chain of Linear, BatchNorm1d (running statistics), ReLU and
Dropout layers (:func:`amulet.utils._stacked_chain.chain_layers`), eval mode makes every BatchNorm an affine map
that folds into the Linear before it, and the gradient is one matrix product per layer forward and one back,
with the ReLU masks in between: about half the time autograd takes for the same pass on a LinearNet batch of
128 rows (it also records the BatchNorm operations and computes through the parameters' graph nodes). The
gradient equals autograd's up to float rounding (tested); PGD keeps only its sign. :func:`input_gradient` picks
the hand-written gradient where it applies and autograd everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from amulet.utils._hooks import has_hooks
from amulet.utils._stacked_chain import cached_chain_layers, fold_batchnorms

__all__ = [
    "chain_input_gradient",
    "chain_logits",
    "chain_logits_and_input_gradient",
    "input_gradient",
    "loss_gradient",
]


def _switches_plainly(model: nn.Module) -> bool:
    """True when ``model.eval()`` would only flip the modules' ``training`` flags (no module overrides ``train``)."""
    return all(type(m).train is nn.Module.train for m in model.modules())


def _eval_ops(model: nn.Module, as_eval: bool) -> list[tuple[torch.Tensor, torch.Tensor | None] | None] | None:
    """The folded eval-mode chain of ``model``: ``(weight, bias)`` per Linear, None per ReLU; None if not a chain.

    With ``as_eval`` a model in training mode is read as ``model.eval()`` would make it (running statistics,
    no dropout), without switching it: only when switching would do nothing else (:func:`_switches_plainly`).
    """
    # every module's flag, not only the root's: a submodule left in training mode (a BatchNorm normalising with
    # batch statistics) computes something else than the folded chain
    if any(m.training for m in model.modules()) and not (as_eval and _switches_plainly(model)):
        return None
    if has_hooks(model, parameters=False):  # checked on every call: hooks come and go
        return None
    layers = cached_chain_layers(model)
    if layers is None:
        return None
    state = model.state_dict()  # detached tensors: parameters and running statistics
    with torch.no_grad():
        folded = fold_batchnorms(layers, state, state)
    if folded is None:  # a BatchNorm without running statistics
        return None
    # flatten: the rows are flattened by the passes
    return [
        (folded[1][layer.prefix + "weight"], folded[1].get(layer.prefix + "bias")) if layer.kind == "linear" else None
        for layer in folded[0]
        if layer.kind in ("linear", "relu")
    ]


def _forward(
    ops: list[tuple[torch.Tensor, torch.Tensor | None] | None],
    x: torch.Tensor,
    relu_outputs: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """The folded chain's logits on ``x``; with ``relu_outputs``, each op's ReLU output (None for a Linear) is
    appended to it."""
    h = x.reshape(len(x), -1)
    for op in ops:
        if op is None:
            h = torch.relu(h)
        else:
            weight, bias = op
            h = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
        if relu_outputs is not None:
            relu_outputs.append(h if op is None else None)
    return h


def chain_logits(model: nn.Module, *, as_eval: bool = False) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``logits(x)``: the eval-mode logits of a chain model, from its folded layers (no autograd, no module calls).

    They equal ``model(x)``'s in eval mode up to float rounding. None when the model is not such a chain (see
    :func:`chain_input_gradient`). The model's current weights are read when this is called.

    Args:
        model: The classifier, in eval mode unless ``as_eval``.
        as_eval: Compute as in eval mode even when the model is in training mode, leaving its mode as it is
            (saves the two recursive mode switches per batch of callers that would only switch for this).
    """
    ops = _eval_ops(model, as_eval)
    if ops is None:
        return None

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _forward(ops, x)

    return logits


def chain_input_gradient(
    model: nn.Module, *, as_eval: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``grad(x, y)``: the gradient of ``cross_entropy(model(x), y, reduction="sum")`` with respect to ``x``.

    Only for a model in eval mode whose forward is a chain (see the module notes) and whose BatchNorms keep
    running statistics; None otherwise (the caller then uses autograd). The model's current weights are read
    when this is called: call it again after the weights change.

    Args:
        model: The classifier, in eval mode unless ``as_eval``.
        as_eval: As in :func:`chain_logits`.

    Returns:
        The gradient function, or None when the model is not such a chain.
    """
    both = chain_logits_and_input_gradient(model, as_eval=as_eval)
    return None if both is None else lambda x, y: both(x, y)[1]


def chain_logits_and_input_gradient(
    model: nn.Module, *, as_eval: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """``both(x, y)``: the logits on ``x`` and the input gradient of :func:`chain_input_gradient`, in one pass.

    The logits come from the folded layers, so they equal ``model(x)``'s up to float rounding. None when the
    model is not an eval-mode chain (see :func:`chain_input_gradient`; ``as_eval`` as in :func:`chain_logits`).
    """
    ops = _eval_ops(model, as_eval)
    if ops is None:
        return None

    def both(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            relu_outputs: list[torch.Tensor | None] = []  # each ReLU's output, for its backward
            logits = _forward(ops, x, relu_outputs)
            # d(sum of cross-entropies)/d logits = softmax - one-hot
            g = torch.softmax(logits, dim=1)
            g[torch.arange(len(y), device=g.device), y] -= 1
            for op, out in zip(reversed(ops), reversed(relu_outputs)):
                if op is None:
                    assert out is not None
                    # ReLU's own backward kernel: a float-by-bool mask product takes a slow mixed-dtype path
                    g = torch.ops.aten.threshold_backward(g, out, 0.0)
                else:
                    g = g @ op[0]
            return logits, g.reshape(x.shape)

    return both


def loss_gradient(loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``gradient(x)``: the gradient of the scalar ``loss_fn(x)`` with respect to ``x``, by autograd.

    Only the input's gradient is computed; no parameter's ``.grad`` is touched.
    """

    def gradient(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss_fn(x), x)
        return grad

    return gradient


def input_gradient(
    model: nn.Module, y: torch.Tensor, *, by_hand: bool = True
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``gradient(x)``: the gradient of ``cross_entropy(model(x), y, reduction="sum")`` with respect to ``x``.

    Written out by hand for an eval-mode MLP chain (:func:`chain_input_gradient`), by autograd for any other
    model. The model's weights are read when this is called.

    Args:
        model: The classifier (PGD puts it in eval mode first).
        y: The labels whose loss is differentiated.
        by_hand: False always uses autograd (``benchmarks/bench_layer1_steps.py`` times both side by side).

    Returns:
        The gradient function of the inputs.
    """
    written = chain_input_gradient(model) if by_hand else None
    if written is not None:
        return lambda x: written(x, y)
    return loss_gradient(lambda x: F.cross_entropy(model(x), y, reduction="sum"))
