"""MinGD (Maini et al., ICLR 2021): how far each input must move, per norm, to be classified as each class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from amulet.utils import chain_logits_and_input_gradient

__all__ = ["NORMS", "mingd_distances"]

NORMS = ("linf", "l2", "l1")


def _row_norm(z: torch.Tensor, norm: str) -> torch.Tensor:
    flat = z.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(dim=1)
    return flat.abs().sum(1)


def _l1_direction(
    grad: torch.Tensor, x_curr: torch.Tensor, k: int, gap: float, bounds: tuple[float, float] | None
) -> torch.Tensor:
    """Signs of the ``k`` largest gradient coordinates that can still move without leaving the box."""
    g = grad.flatten(1).clone()
    if bounds is not None:
        xc = x_curr.flatten(1)
        blocked = ((g < 0) & (xc <= bounds[0] + gap)) | ((g > 0) & (xc >= bounds[1] - gap))
        g[blocked] = 0
    kth = g.abs().topk(min(k, g.shape[1]), dim=1).values[:, -1:]
    direction = (g.abs() >= kth).to(g.dtype) * g.sign()
    return direction.reshape(grad.shape)


def mingd_distances(
    model: nn.Module,
    x: torch.Tensor,
    num_classes: int,
    *,
    norm: str,
    alpha: float,
    num_iter: int,
    k: int = 1,
    gap: float = 0.001,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """MinGD: per input and per target class, the norm of the smallest perturbation found that reaches it.

    All (input, class) pairs are optimised together as one batch; a pair stops as soon as the model
    predicts its class (the class the model already predicts has distance 0). Each step moves towards
    lower cross-entropy for the target class: the sign of the gradient (L-inf), the normalised gradient
    (L2) or the signs of its ``k`` largest coordinates (L1), times ``alpha``, keeping x + delta inside
    ``bounds``.

    Args:
        model: Classifier (evaluated in eval mode; its mode is restored).
        x: Inputs, shape (n, ...), on the model's device.
        num_classes: Number of classes.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        alpha: Step size.
        num_iter: Maximum number of steps.
        k: Coordinates moved per L1 step.
        gap: L1 only: coordinates within ``gap`` of a bound are not pushed further towards it.
        bounds: Valid input range, or None for unbounded (tabular) inputs.

    Returns:
        Distances of shape (n, num_classes).
    """
    n = len(x)
    rows = x.repeat_interleave(num_classes, dim=0)
    targets = torch.arange(num_classes, device=x.device).repeat(n)
    delta = torch.zeros_like(rows)
    active = torch.arange(len(rows), device=x.device)
    was_training = model.training
    model.eval()
    # An MLP chain's logits and input gradient written out (BatchNorm folded): half of autograd's time
    by_hand = chain_logits_and_input_gradient(model)
    try:
        for _ in range(num_iter):
            if len(active) == 0:
                break
            xa = rows[active]
            da = delta[active]
            if by_hand is not None:
                logits, grad = by_hand(xa + da, targets[active])
            else:
                da = da.requires_grad_(True)
                with torch.enable_grad():
                    logits = model(xa + da)
                    loss = F.cross_entropy(logits, targets[active], reduction="sum")
                    (grad,) = torch.autograd.grad(loss, da)
            pending = logits.argmax(1) != targets[active]
            if not bool(pending.any()):
                break
            descent = -grad[pending]
            d_new = da.detach()[pending]
            x_pending = xa[pending]
            if norm == "linf":
                d_new = d_new + alpha * descent.sign()
            elif norm == "l2":
                scale = descent.flatten(1).norm(dim=1).clamp_min(1e-12)
                d_new = d_new + alpha * descent / scale.reshape(-1, *([1] * (descent.dim() - 1)))
            else:
                d_new = d_new + alpha * _l1_direction(descent, x_pending + d_new, k, gap, bounds)
            if bounds is not None:
                d_new = torch.max(torch.min(d_new, bounds[1] - x_pending), bounds[0] - x_pending)
            active = active[pending]
            delta[active] = d_new
    finally:
        model.train(was_training)
    return _row_norm(delta, norm).reshape(n, num_classes)
