"""A caller's ``torch.optim.Adam`` / ``AdamW`` stepped over one flat buffer: same numbers, a third of the time.

On the CPU, ``torch.optim.Adam`` (no ``foreach``/``fused`` chosen) takes its single-tensor path: seven
elementwise operations per parameter tensor, each dispatched from Python. For the small models layer 1 trains
(an MLP's fourteen tensors, 80,000 numbers), that overhead is most of a step: 0.6 ms of Adam next to 1.0 ms of
forward and backward on a 128-row batch. Copying the parameters, gradients and moments into one contiguous
buffer per parameter group, and pointing each parameter (and its ``.grad``) at its slice, runs the same seven
operations once per group. Every operation is elementwise and applied in the same order with the same scalars
(``_single_tensor_adam``'s), so the parameters and moments are bit for bit those of ``optimizer.step()``
(tested over whole trainings).

:func:`flat_adam` is a context that yields an object with ``zero_grad()`` and ``step()``. It uses the flat
buffers only where that changes nothing observable, and otherwise delegates to the optimizer itself:

* the optimizer is exactly ``torch.optim.Adam`` or ``AdamW``, with no step hooks and no LR scheduler wrapping
  its ``step`` (a scheduler counts calls of ``step``);
* every group leaves ``amsgrad``, ``maximize``, ``differentiable``, ``capturable``, ``foreach`` and ``fused``
  unset, has float hyper-parameters, and holds dense float CPU tensors (on a GPU, torch already runs one kernel
  over all tensors);
* every parameter that requires a gradient gets one at every step (torch's Adam skips a parameter without a
  gradient, and a zeroed flat slice cannot tell "no gradient" from a zero one, so a hook after each
  parameter's gradient accumulation keeps count; the first step that misses one hands the rest of the run
  back to the optimizer), and the group's parameters share one step count.

On leaving the context the optimizer's ``state`` holds what ``step()`` would have left (``step``, ``exp_avg``,
``exp_avg_sq`` per parameter) and every parameter has its own storage again, so the optimizer and the model can
be saved, loaded or stepped directly afterwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.optim.optimizer import _get_scalar_dtype, _global_optimizer_post_hooks, _global_optimizer_pre_hooks

__all__ = ["FlatAdam", "flat_adam"]

_UNSET_FLAGS = ("amsgrad", "maximize", "differentiable", "capturable")
_PATH_FLAGS = ("foreach", "fused")
#: The open block of each optimizer, so that a nested block shares it.
_OPEN: weakref.WeakKeyDictionary[torch.optim.Optimizer, FlatAdam] = weakref.WeakKeyDictionary()


@dataclass
class _FlatGroup:
    """One parameter group's tensors laid end to end."""

    group: dict
    params: list[torch.nn.Parameter]
    flat_param: torch.Tensor
    flat_grad: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: int
    grad_addresses: list[int]
    received: list[bool]


def _eligible(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the flat buffers would give exactly what ``optimizer.step()`` gives (see the module notes)."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
        return False
    if "step" in vars(optimizer):  # wrapped by an LR scheduler, which counts the calls
        return False
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
        return False
    for group in optimizer.param_groups:
        if any(group.get(flag) for flag in _UNSET_FLAGS) or any(group.get(f) is not None for f in _PATH_FLAGS):
            return False
        scalars = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scalars):
            return False
        for p in group["params"]:
            if p.requires_grad and (p.device.type != "cpu" or not p.dtype.is_floating_point or p.is_sparse):
                return False
        if len({p.dtype for p in group["params"]}) > 1:
            return False
    return True


class FlatAdam:
    """``zero_grad()`` and ``step()`` of a ``torch.optim.Adam``/``AdamW``, over flat buffers where exact.

    Made by :func:`flat_adam`; see the module notes for when it falls back to the optimizer's own methods.

    Args:
        optimizer: The caller's optimizer.
        enabled: False always delegates to the optimizer's own methods (for side-by-side measurements).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, enabled: bool = True) -> None:
        self.optimizer = optimizer
        self._eligible = enabled and _eligible(optimizer)
        self._groups: list[_FlatGroup] | None = None
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        #: id(parameter) -> (its flat group, its index there), while the buffers are in use.
        self._where: dict[int, tuple[_FlatGroup, int]] = {}

    def add_grads(self, grads: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Add gradients computed without autograd into the parameters' ``.grad``, as ``backward()`` would.

        For hand-written backward passes: a parameter without ``.grad`` takes the gradient, one with a ``.grad``
        adds it in place (autograd's accumulation), and the flat buffers count the parameter as having received
        its gradient this step. Gradient hooks registered on the parameters are not run.

        Args:
            grads: ``(parameter, gradient)`` pairs, each gradient of its parameter's shape.
        """
        for p, g in grads:
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)
            where = self._where.get(id(p))
            if where is not None:
                where[0].received[where[1]] = True

    @property
    def flat(self) -> bool:
        """Whether the steps now run over the flat buffers."""
        return self._groups is not None

    def zero_grad(self) -> None:
        """``optimizer.zero_grad()``: clears every gradient of the optimizer's parameters."""
        if self._groups is None:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for flat in self._groups:
            flat.flat_grad.zero_()
            flat.received[:] = [False] * len(flat.params)
            offset = 0
            for p, address in zip(flat.params, flat.grad_addresses):
                n = p.numel()
                if p.grad is None or p.grad.data_ptr() != address:  # replaced by the caller: point it back
                    p.grad = flat.flat_grad[offset : offset + n].view_as(p)
                offset += n

    def step(self) -> None:
        """``optimizer.step()``."""
        if self._groups is None and (not self._eligible or not self._flatten()):
            self.optimizer.step()
            return
        assert self._groups is not None
        if not self._gradients_in_place():
            self.close()  # torch's Adam skips a parameter with no gradient: let it take this and later steps
            self._eligible = False
            self.optimizer.step()
            return
        for flat in self._groups:
            self._adam_step(flat)

    def _gradients_in_place(self) -> bool:
        """Whether every gradient is still its flat slice; a gradient the caller replaced is copied back in."""
        assert self._groups is not None
        for flat in self._groups:
            offset = 0
            for i, (p, address) in enumerate(zip(flat.params, flat.grad_addresses)):
                n = p.numel()
                grad = p.grad
                if not flat.received[i] or grad is None or grad.is_sparse:
                    return False
                if grad.data_ptr() != address:
                    piece = flat.flat_grad[offset : offset + n]
                    piece.copy_(grad.reshape(-1))
                    p.grad = piece.view_as(p)
                offset += n
        return True

    def _flatten(self) -> bool:
        """Move the parameters, gradients and moments into flat buffers; False (and nothing moved) if inexact."""
        state = self.optimizer.state
        groups: list[tuple[dict, list[torch.nn.Parameter], int]] = []
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if p.requires_grad]
            if any(p.grad is None or p.grad.is_sparse for p in params):
                self._eligible = False  # torch's Adam would skip that parameter this step
                return False
            steps = {float(state[p]["step"]) if "step" in state[p] else 0.0 for p in params}
            if len(steps) > 1 or any(state[p] and "exp_avg" not in state[p] for p in params):
                self._eligible = False
                return False
            groups.append((group, params, int(steps.pop()) if steps else 0))
        self._groups = []
        for group, params, step in groups:
            total = sum(p.numel() for p in params)
            dtype = params[0].dtype if params else torch.float32
            flat = _FlatGroup(
                group=group,
                params=params,
                flat_param=torch.empty(total, dtype=dtype),
                flat_grad=torch.empty(total, dtype=dtype),
                exp_avg=torch.zeros(total, dtype=dtype),
                exp_avg_sq=torch.zeros(total, dtype=dtype),
                step=step,
                grad_addresses=[],
                received=[True] * len(params),
            )
            offset = 0
            for p in params:
                n = p.numel()
                piece = slice(offset, offset + n)
                flat.flat_param[piece].copy_(p.detach().reshape(-1))
                assert p.grad is not None
                flat.flat_grad[piece].copy_(p.grad.reshape(-1))
                if state[p]:
                    flat.exp_avg[piece].copy_(state[p]["exp_avg"].reshape(-1))
                    flat.exp_avg_sq[piece].copy_(state[p]["exp_avg_sq"].reshape(-1))
                p.data = flat.flat_param[piece].view_as(p)
                p.grad = flat.flat_grad[piece].view_as(p)
                flat.grad_addresses.append(p.grad.data_ptr())
                self._where[id(p)] = (flat, len(flat.grad_addresses) - 1)
                # a zeroed flat slice cannot tell "no gradient" from a zero one: the hook tells
                self._hooks.append(
                    p.register_post_accumulate_grad_hook(_mark(flat.received, len(flat.grad_addresses) - 1))
                )
                offset += n
            self._groups.append(flat)
        return True

    @staticmethod
    def _adam_step(flat: _FlatGroup) -> None:
        """``torch.optim.adam._single_tensor_adam`` for one tensor (its operations, order and scalars)."""
        group = flat.group
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        param, grad = flat.flat_param, flat.flat_grad
        flat.step += 1
        if weight_decay != 0:
            if group.get("decoupled_weight_decay", False):
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        flat.exp_avg.lerp_(grad, 1 - beta1)
        flat.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(flat.step)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (flat.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        param.addcdiv_(flat.exp_avg, denom, value=-step_size)

    def close(self) -> None:
        """Leave the flat buffers: the optimizer's state as ``step()`` leaves it, parameters in own storage."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._where = {}
        if self._groups is None:
            return
        state = self.optimizer.state
        for flat in self._groups:
            offset = 0
            step = torch.tensor(float(flat.step), dtype=_get_scalar_dtype())  # as Adam makes its step tensors
            for p, received in zip(flat.params, flat.received):
                n = p.numel()
                piece = slice(offset, offset + n)
                state[p]["step"] = step.clone()
                state[p]["exp_avg"] = flat.exp_avg[piece].view_as(p).clone()
                state[p]["exp_avg_sq"] = flat.exp_avg_sq[piece].view_as(p).clone()
                p.data = flat.flat_param[piece].view_as(p).clone()
                # what zero_grad(set_to_none=True) and a backward that did not reach p would have left
                p.grad = p.grad.clone() if p.grad is not None and received else None
                offset += n
        self._groups = None


def _mark(received: list[bool], index: int) -> Callable[[torch.Tensor], None]:
    def hook(_: torch.Tensor) -> None:
        received[index] = True

    return hook


@contextmanager
def flat_adam(optimizer: torch.optim.Optimizer, *, enabled: bool = True) -> Iterator[FlatAdam]:
    """Step ``optimizer`` through :class:`FlatAdam` inside the block; its state is written back on leaving.

    ``enabled=False`` runs the optimizer's own ``zero_grad``/``step`` (``benchmarks/bench_layer1_steps.py`` times
    both side by side). A block nested in another over the same optimizer (a training loop called from inside
    another's) yields the outer block's object, which alone holds the optimizer's live state until it closes.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        >>> with flat_adam(optimizer) as steps:
        ...     for _ in range(3):
        ...         steps.zero_grad()
        ...         model(torch.ones(4, 3)).sum().backward()
        ...         steps.step()
        >>> int(optimizer.state[model.weight]["step"])
        3
    """
    if optimizer in _OPEN:  # nested in a block over the same optimizer: its buffers hold the live state
        yield _OPEN[optimizer]
        return
    steps = FlatAdam(optimizer, enabled=enabled)
    _OPEN[optimizer] = steps
    try:
        yield steps
    finally:
        del _OPEN[optimizer]
        steps.close()
