"""Adam and SGD over stacked ``(K, ...)`` parameters, with one step count per model.

Both optimizers are elementwise, so running them on a stacked tensor is the same as running them on each
model's slice -- *if* every model takes a step every time. Populations whose subsets differ in size do not:
at the end of an epoch some models have no batch (or a skipped batch of one) while others still step, and
from then on their Adam bias corrections differ. :class:`StackedOptimizer` therefore keeps a step count per
model and leaves the parameters and moments of inactive models untouched, as ``torch.optim`` would by not
being called for them.

Adam runs through ``torch.optim.adam.adam(..., fused=True)``, torch's own single-pass kernel: over the whole
stacked tensors when every model is active at the same step count, otherwise over the active models' slices
(each slice with its own step count). SGD is written out (``dampening=0``, ``nesterov=False``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.adam import adam as functional_adam

from amulet.utils._training import TrainConfig

__all__ = ["StackedOptimizer"]

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, which make_optimizer uses


class StackedOptimizer:
    """Adam or SGD (``torch.optim`` semantics) over stacked ``(K, ...)`` parameters, one step count per model.

    ``step(active)`` updates only the models where ``active`` is True; inactive models keep their
    parameters, moments and step counts, exactly as if their own ``torch.optim`` optimizer had not been
    called. Adam is ``torch.optim.Adam`` (``amsgrad=False``, L2 weight decay added to the gradient; its fused
    kernel); SGD is ``torch.optim.SGD`` (``dampening=0``, ``nesterov=False``; a zero-initialised momentum
    buffer equals torch's first-step ``buf = grad``).

    Args:
        params: Stacked tensors, first dimension K. Their ``.grad`` is read by :meth:`step` unless gradients
            are passed to it.
        config: Optimizer name, learning rate, weight decay and momentum.
        n_models: K.
    """

    def __init__(self, params: dict[str, torch.Tensor], config: TrainConfig, n_models: int) -> None:
        self.params = params
        self.config = config
        self.n_models = n_models
        device = next(iter(params.values())).device if params else torch.device("cpu")
        self.device = device
        #: Steps taken by each model.
        self.steps = np.zeros(n_models, dtype=np.float64)
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        for name, p in params.items():
            if config.optimizer == "adam":
                self.state[name] = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            elif config.momentum:
                self.state[name] = {"momentum_buffer": torch.zeros_like(p)}
            else:
                self.state[name] = {}

    def zero_grad(self) -> None:
        """Drop every parameter's gradient."""
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None, grads: dict[str, torch.Tensor] | None = None) -> None:
        """One optimizer step for the models where ``active`` (bool, shape (K,)) is True (all when None).

        Args:
            active: Which models step (None: all).
            grads: Gradients by parameter name, each of its parameter's shape; None reads ``param.grad``.
                A parameter without a gradient is left alone (as ``torch.optim`` skips it).
        """
        active_np = None if active is None else active.detach().cpu().numpy().astype(bool)
        all_active = active_np is None or bool(active_np.all())
        before = self.steps.copy()
        if all_active:
            self.steps += 1
        else:
            self.steps += active_np  # type: ignore[arg-type]
        pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        for name, p in self.params.items():
            g = p.grad if grads is None else grads.get(name)
            if g is not None:
                pairs.append((name, p, g))
        if not pairs:
            return
        if self.config.optimizer == "adam":
            self._adam(pairs, active_np, all_active, before)
        else:
            self._sgd(pairs, active, all_active)

    def _adam(
        self,
        pairs: list[tuple[str, torch.Tensor, torch.Tensor]],
        active_np: np.ndarray | None,
        all_active: bool,
        before: np.ndarray,
    ) -> None:
        cfg = self.config
        if all_active and before.min() == before.max():
            # One step count for everyone: the whole stacked tensors in one fused call per group.
            params = [p for _, p, _ in pairs]
            grads = [g for _, _, g in pairs]
            avgs = [self.state[n]["exp_avg"] for n, _, _ in pairs]
            sqs = [self.state[n]["exp_avg_sq"] for n, _, _ in pairs]
            steps = [torch.tensor(float(before[0]), device=self.device) for _ in pairs]
        else:
            # The active models' slices, each with its step count (Adam's bias corrections). Consecutive active
            # models at the same count share one slice of each tensor: populations whose subsets differ in size
            # drift apart by whole epochs and then step in a few runs of models, not one slice per model (a
            # 32-model distribution-inference population's step: 4.4 ms in 448 slices, one run per ratio now).
            members = list(range(self.n_models)) if active_np is None else np.flatnonzero(active_np).tolist()
            runs = _runs(members, before)
            steps = [torch.tensor(float(before[k0]), device=self.device) for _ in pairs for k0, _ in runs]
            params, grads, avgs, sqs = [], [], [], []
            for n, p, g in pairs:
                exp_avg, exp_avg_sq = self.state[n]["exp_avg"], self.state[n]["exp_avg_sq"]
                for k0, k1 in runs:
                    params.append(p[k0:k1])
                    grads.append(g[k0:k1])
                    avgs.append(exp_avg[k0:k1])
                    sqs.append(exp_avg_sq[k0:k1])
        functional_adam(
            params,
            grads,
            avgs,
            sqs,
            [],
            steps,
            fused=True,
            amsgrad=False,
            beta1=_BETA1,
            beta2=_BETA2,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            eps=_EPS,
            maximize=False,
        )

    def _sgd(
        self, pairs: list[tuple[str, torch.Tensor, torch.Tensor]], active: torch.Tensor | None, all_active: bool
    ) -> None:
        cfg = self.config
        for name, p, grad in pairs:
            shape = (self.n_models,) + (1,) * (p.dim() - 1)
            if cfg.weight_decay:
                grad = grad.add(p, alpha=cfg.weight_decay)
            state = self.state[name]
            if all_active:
                if cfg.momentum:
                    grad = state["momentum_buffer"].mul_(cfg.momentum).add_(grad)
                p.add_(grad, alpha=-cfg.lr)
                continue
            if cfg.momentum:
                new_buf = state["momentum_buffer"].mul(cfg.momentum).add_(grad)
                update = new_buf
            else:
                new_buf = None
                update = grad
            new_p = p.add(update, alpha=-cfg.lr)
            mask = active.view(shape)  # type: ignore[union-attr]
            if new_buf is not None:
                state["momentum_buffer"].copy_(torch.where(mask, new_buf, state["momentum_buffer"]))
            p.copy_(torch.where(mask, new_p, p))


def _runs(members: list[int], steps: np.ndarray) -> list[tuple[int, int]]:
    """``[k0, k1)`` ranges of consecutive ``members`` (ascending model indices) with equal ``steps``."""
    runs: list[tuple[int, int]] = []
    for k in members:
        if runs and runs[-1][1] == k and steps[k] == steps[runs[-1][0]]:
            runs[-1] = (runs[-1][0], k + 1)
        else:
            runs.append((k, k + 1))
    return runs
