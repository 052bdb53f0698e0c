"""Whether a module's computation could differ from its layers' arithmetic: hooks that written-out passes skip."""

from __future__ import annotations

from torch import nn
from torch.nn.modules import module as _module

__all__ = ["has_hooks"]


def has_hooks(model: nn.Module, *, parameters: bool = True) -> bool:
    """True when a forward or backward hook could change what ``model`` computes or sees.

    Hand-written passes (PGD's input gradient, MinGD's, debiasing's adversary steps) replay the layers'
    arithmetic without calling the modules, so they are only used where no hook would have run: none on any
    submodule, none registered globally for every module, and, with ``parameters``, none on a parameter's
    gradient (``Tensor.register_hook`` / ``register_post_accumulate_grad_hook``).

    Args:
        model: The module.
        parameters: Also count hooks on the parameters' gradients (for passes that compute those gradients).
    """
    global_hooks = (
        _module._global_forward_hooks,
        _module._global_forward_pre_hooks,
        _module._global_backward_hooks,
        _module._global_backward_pre_hooks,
    )
    if any(global_hooks):
        return True
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks:
            return True
    if parameters:
        for p in model.parameters():
            if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None):
                return True
    return False
