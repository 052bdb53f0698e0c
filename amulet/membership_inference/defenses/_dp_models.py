"""Which models DP-SGD can train, and the copy it trains: BatchNorm replaced, uploaded graphs refused or kept."""

from __future__ import annotations

import copy

from torch import nn

from amulet.exceptions import NotApplicableError

__all__ = ["is_uploaded_graph", "make_dp_compatible", "refuse_unless_dp_trainable", "replaced_modules"]


def replaced_modules(before: nn.Module, after: nn.Module) -> list[str]:
    """``"name: OldType -> NewType"`` for each module of ``before`` that ``after`` holds as another type."""
    old = {name: type(m).__name__ for name, m in before.named_modules()}
    return [
        f"{name}: {old[name]} -> {type(m).__name__}"
        for name, m in after.named_modules()
        if name in old and old[name] != type(m).__name__
    ]


def is_uploaded_graph(model: nn.Module) -> bool:
    """Whether ``model`` is an uploaded graph (:class:`amulet.io.GraphModel`), trained through ``torch.func``."""
    # Lazy for its import cost: amulet.io loads every model-file reader (ONNX, torch.export) on import.
    from amulet.io._graph import GraphModel

    return isinstance(model, GraphModel)


def refuse_unless_dp_trainable(model: nn.Module) -> None:
    """Raise :class:`~amulet.exceptions.NotApplicableError` when DP-SGD cannot train the uploaded graph ``model``.

    A graph with BatchNorm has no per-sample gradient (the reason, and the layers to export instead, are
    :func:`amulet.io.dp_sgd_refusal`'s). Any other model passes.
    """
    if is_uploaded_graph(model):
        from amulet.io._graph import dp_sgd_refusal  # lazy: amulet.io's import cost, as above

        reason = dp_sgd_refusal(model)
        if reason:
            raise NotApplicableError(reason)


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that Opacus can train: BatchNorm replaced by GroupNorm (then ``ModuleValidator.fix``).

    ``BatchNorm1d`` (one value per channel and sample in an MLP) becomes ``GroupNorm(1, C)``, i.e. a
    per-sample normalisation over all features: Opacus' default ``GroupNorm(gcd(32, C), C)`` would put a
    single value in each group for 1-d features and normalise every activation to zero. Other unsupported
    modules (``BatchNorm2d`` ...) get Opacus' default fix.

    An uploaded graph (:class:`amulet.io.GraphModel`) is returned as it is: its operators, not its modules,
    compute the forward pass, so swapping a module would not change what it computes. DP-SGD trains it as
    uploaded, or refuses it when it has BatchNorm (:func:`refuse_unless_dp_trainable`).
    """
    from opacus.validators import ModuleValidator

    if is_uploaded_graph(model):
        return model
    fixed = copy.deepcopy(model)
    for name, module in list(fixed.named_modules()):
        if isinstance(module, nn.BatchNorm1d):
            parent_name, _, child = name.rpartition(".")
            parent = fixed.get_submodule(parent_name) if parent_name else fixed
            setattr(parent, child, nn.GroupNorm(1, module.num_features, affine=module.affine))
    return ModuleValidator.fix(fixed)
