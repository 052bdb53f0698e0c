"""The debiasing adversary's loss and parameter gradients, written out instead of recorded by autograd.

Adversarial debiasing takes ten adversary steps for every classifier step, and the adversary is a four-layer
MLP of 32 units on two inputs: each step's arithmetic is a few microseconds, while autograd's recording and
replay of its twenty operations, and the module calls around them, cost most of a millisecond
(``benchmarks/bench_layer1_steps.py``). :func:`adversary_gradients` runs the same ATen operations autograd
runs, in the same order and on the same operands (``addmm`` forward; ``mm`` of the transposed gradient for
the weights, ``sum`` over rows for the biases, ``threshold_backward`` through the ReLUs; the sigmoid-minus-target
gradient of the binary cross-entropy scaled as the two means' backward scale it), so the loss and every
gradient equal ``loss.backward()``'s bit for bit (tests/discriminatory_behavior/test_adversary_gradients.py).

It applies to an :class:`AdversaryModel` as built (Linear and ReLU layers only) whose modules carry no hooks;
anything else takes autograd (:func:`hand_written`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from amulet.utils._hooks import has_hooks

if TYPE_CHECKING:
    from amulet.discriminatory_behavior.defenses._debiasing_loop import AdversaryModel

__all__ = ["adversary_gradients", "hand_written"]


def hand_written(adversary: nn.Module) -> bool:
    """Whether :func:`adversary_gradients` gives exactly what autograd gives for ``adversary``.

    True for an :class:`AdversaryModel` whose network alternates ``Linear`` and ``ReLU`` (ending with a
    ``Linear``), with every parameter requiring a gradient and no forward or backward hook on any module, its
    parameters or globally.
    """
    from amulet.discriminatory_behavior.defenses._debiasing_loop import AdversaryModel

    if type(adversary) is not AdversaryModel:
        return False
    layers = list(adversary.network)
    kinds = [type(layer) for layer in layers]
    if not layers or kinds[0] is not nn.Linear or kinds[-1] is not nn.Linear:
        return False
    if any(kind is not (nn.Linear if i % 2 == 0 else nn.ReLU) for i, kind in enumerate(kinds)):
        return False
    if any(layer.bias is None for layer in layers[::2]):
        return False
    if any(not p.requires_grad for p in adversary.parameters()):
        return False
    return not has_hooks(adversary)


@functools.lru_cache(maxsize=32)
def _loss_scale(n: int, n_sensitive: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """What the backward of ``.mean(0).mean()`` multiplies each row's gradient by: 1 spread over the
    attributes, then over the rows (computed as autograd computes it, so the products round the same)."""
    scale = torch.ones((), dtype=dtype, device=device).expand(n_sensitive) / n_sensitive
    return scale.unsqueeze(0).expand(n, n_sensitive) / n


@torch.no_grad()
def adversary_gradients(
    adversary: AdversaryModel, outputs: torch.Tensor, z: torch.Tensor, *, with_loss: bool = True
) -> tuple[torch.Tensor | None, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The adversary's loss on the classifier's ``outputs`` and the gradient of every parameter.

    The loss is ``mean_k BCE_k``, the mean over the sensitive attributes of each one's mean binary
    cross-entropy (what the debiasing loop minimises for the adversary).

    Args:
        adversary: An adversary for which :func:`hand_written` is True.
        outputs: The classifier's outputs (logits), shape (n, n_input); no gradient flows into them.
        z: The sensitive attributes, float, shape (n, n_sensitive).
        with_loss: Compute the loss too (keyword-only); False returns None in its place (the gradients do
            not need it, and the debiasing loop only reports one step's loss in ten).

    Returns:
        The loss (a 0-d tensor, or None) and ``(parameter, gradient)`` pairs, last layer first.
    """
    linears = [layer for layer in adversary.network if isinstance(layer, nn.Linear)]
    h = torch.log_softmax(outputs, dim=1)
    inputs = []  # each Linear's input, which is also the previous ReLU's output
    for i, layer in enumerate(linears):
        inputs.append(h)
        h = torch.addmm(layer.bias, h, layer.weight.t())
        if i < len(linears) - 1:
            h = torch.relu(h)
    loss = F.binary_cross_entropy_with_logits(h, z, reduction="none").mean(0).mean() if with_loss else None
    n, n_sensitive = h.shape
    g = (h.sigmoid() - z) * _loss_scale(n, n_sensitive, h.dtype, h.device)
    grads: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(linears) - 1, -1, -1):
        layer, x = linears[i], inputs[i]
        grads.append((layer.bias, g.sum(0)))
        grads.append((layer.weight, g.t().mm(x)))
        if i > 0:
            g = torch.ops.aten.threshold_backward(g.mm(layer.weight), x, 0)
    return loss, grads
