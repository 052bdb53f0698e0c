"""The batched training loop: K models of one architecture trained as one stacked ensemble.

Model ``k`` follows :func:`amulet.utils.train_model`'s procedure exactly (see :mod:`amulet.utils._population`
for the equivalence argument): initial weights ``seeded_init(model_factory, seeds[k])``; per epoch the batch
order ``torch.randperm(n_k, generator=make_generator(seeds[k]))`` cut into mini-batches of
``config.batch_size``; with BatchNorm a final batch of one sample is skipped; mean cross-entropy over the
model's own mini-batch; the optimizer step of :class:`~amulet.utils.StackedOptimizer`.

Two kernels compute a step's losses and gradients:

* chains of Linear / BatchNorm1d / ReLU / Dropout layers (MLPs such as :class:`amulet.models.LinearNet`)
  use the hand-written stacked kernels of :mod:`amulet.utils._stacked_chain` (``bmm`` on stacked weights);
* every other batchable architecture, and any population trained with a batch transform (adversarial
  training's PGD needs input gradients through the models), uses ``vmap`` over ``functional_call`` with
  the BatchNorm shim of :mod:`amulet.utils._stackable_batchnorm`; the K losses are summed before one
  backward pass (models share no parameters, so model ``k``'s slice of each gradient is its own loss's).

Models whose current batch sizes differ (the last steps of an epoch with unequal subsets) are computed in
separate groups, one per distinct batch size, so no padding ever enters a BatchNorm batch statistic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from amulet.progress import Progress
from amulet.utils._seeding import make_generator
from amulet.utils._stackable_batchnorm import stackable
from amulet.utils._stacked_chain import StackedChain, chain_layers
from amulet.utils._stacked_optimizer import StackedOptimizer
from amulet.utils._tensordata import TensorData
from amulet.utils._training import StackedBatchTransform, TrainConfig, has_batchnorm, transform_generator

__all__ = [
    "BATCHABLE_MODULES",
    "batchable_reason",
    "check_batched_forward",
    "stacked_kernel",
    "train_stacked_models",
]

#: Leaf module types the batched trainer knows to be safe under ``vmap`` (with stacked BatchNorm buffers).
BATCHABLE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
)

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)


def is_graph_model(model: nn.Module) -> bool:
    """An uploaded graph (:class:`amulet.io.GraphModel`): its modules hold parameters, the graph computes."""
    return hasattr(model, "has_dropout") and hasattr(model, "graph") and hasattr(model, "info")


def vmap_randomness(model: nn.Module) -> str:
    """``vmap``'s randomness mode: ``"different"`` (each model its own dropout masks) when the model draws."""
    if any(isinstance(m, _DROPOUT) for m in model.modules()) or bool(getattr(model, "has_dropout", False)):
        return "different"
    return "error"


def batchable_reason(model: nn.Module) -> str:
    """Empty string when ``model`` can be trained in a stacked ensemble, else the reason it cannot.

    An uploaded graph (:class:`amulet.io.GraphModel`) runs its operators, not its modules' forward methods, so
    its module types say nothing: whether ``vmap`` can run it is found out by a stacked trial step
    (``train_population`` falls back to one model at a time, and logs why, when that fails).
    """
    if is_graph_model(model):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            return "only float32 models are stacked"
        return ""
    for name, module in model.named_modules():
        if len(list(module.children())) == 0 and not isinstance(module, BATCHABLE_MODULES):
            return f"module {name or '<root>'} of type {type(module).__name__} is not known to be vmap-safe"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "only float32 models are stacked"
    return ""


def check_batched_forward(model: nn.Module, x: torch.Tensor, device: torch.device) -> str:
    """Try a stacked forward/backward of two copies on two rows; return an error text or ''."""
    if not is_graph_model(model) and chain_layers(model) is not None and x[0].numel() > 0:
        return ""  # a chain runs on the hand-written kernels, which need no vmap trial
    try:
        copies = [copy.deepcopy(model).to(device).train() for _ in range(2)]
        params, buffers = stack_module_state(copies)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        buffers = {k: v.detach().clone() for k, v in buffers.items()}
        base = copy.deepcopy(model).to("meta").train()
        randomness = vmap_randomness(base)
        xb = x[:2].to(device).unsqueeze(0).expand(2, *x[:2].shape).contiguous()
        out = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)), randomness=randomness)(params, buffers, xb)
        out.float().sum().backward()
    except Exception as exc:  # any failure means: train sequentially
        return f"stacked forward failed ({type(exc).__name__}: {exc})"
    return ""


def stacked_kernel(model: nn.Module, transform: StackedBatchTransform | None = None) -> Literal["chain", "vmap"]:
    """Which kernel :func:`train_stacked_models` uses for this architecture (and batch transform)."""
    if transform is None and not is_graph_model(model) and chain_layers(model) is not None:
        return "chain"
    return "vmap"


def train_stacked_models(
    models: list[nn.Module],
    data: TensorData,
    subsets: list[torch.Tensor],
    seeds: list[int],
    config: TrainConfig,
    device: torch.device,
    progress: Progress,
    transform: StackedBatchTransform | None = None,
    kernel: Literal["auto", "chain", "vmap"] = "auto",
) -> list[nn.Module]:
    """Train the fresh ``models`` (one architecture) as one stacked ensemble, model ``k`` on ``subsets[k]``.

    Args:
        models: Freshly initialised models (``seeded_init`` with ``seeds[k]``).
        data: The pool of rows.
        subsets: Row indices of each model.
        seeds: Each model's seed (its shuffling and its transform generator).
        config: Epochs, batch size, optimizer.
        device: Torch device.
        progress: Progress reporter (task ``"population"``).
        transform: Stacked batch transform (adversarial training), applied to every mini-batch.
        kernel: ``"auto"`` picks the hand-written chain kernels when the architecture allows them.

    Returns:
        The trained models, in eval mode.
    """
    K = len(models)
    for m in models:
        m.to(device).train()
    stacked_params, stacked_buffers = stack_module_state(models)
    use_chain = (kernel == "chain") or (kernel == "auto" and stacked_kernel(models[0], transform) == "chain")
    if use_chain and transform is not None:
        raise ValueError("The chain kernel cannot apply a batch transform; use kernel='vmap'.")
    layers = chain_layers(models[0]) if use_chain else None
    if use_chain and layers is None:
        raise ValueError(f"{type(models[0]).__name__} is not a chain of Linear/BatchNorm1d/ReLU/Dropout layers.")
    params = {k: v.detach().clone().requires_grad_(not use_chain) for k, v in stacked_params.items()}
    buffers = {k: v.detach().clone() for k, v in stacked_buffers.items()}
    step_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, list[int]], tuple[torch.Tensor, dict]]
    if layers is not None:
        chain = StackedChain(layers, params, buffers)

        def step_fn(
            xb: torch.Tensor, yb: torch.Tensor, sel: torch.Tensor | None, members: list[int]
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return chain.loss_and_grads(xb, yb, sel)

    else:
        step_fn = _vmap_step_fn(models[0], params, buffers, seeds, device, transform)
    optimizer = StackedOptimizer(params, config, K)
    has_bn = has_batchnorm(models[0])
    x_all, y_all = data.x.to(device), data.y.to(device)
    generators = [make_generator(s) for s in seeds]
    sizes = np.array([len(s) for s in subsets])
    B = config.batch_size
    n_steps = -(-int(sizes.max()) // B)
    progress.start("population", config.epochs, f"training {K} models (batched)")
    for epoch in range(config.epochs):
        orders = [subsets[k][torch.randperm(int(sizes[k]), generator=generators[k])] for k in range(K)]
        # One (K, max n) index matrix per epoch (shorter orders padded; a step only reads the columns its
        # models have rows for).
        order_matrix = torch.zeros(K, int(sizes.max()), dtype=torch.long)
        for k, order in enumerate(orders):
            order_matrix[k, : len(order)] = order
        order_matrix = order_matrix.to(device)
        total = torch.zeros((), device=device)
        for t in range(n_steps):
            batch_sizes = np.clip(sizes - t * B, 0, B)
            ok = batch_sizes >= (2 if has_bn else 1)
            if not ok.any():
                continue
            groups: dict[int, list[int]] = {}
            for member in np.flatnonzero(ok).tolist():
                groups.setdefault(int(batch_sizes[member]), []).append(member)
            grads: dict[str, torch.Tensor] = {}
            for size, members in groups.items():
                if len(members) == K:
                    idx = order_matrix[:, t * B : t * B + size]
                    sel = None
                else:
                    sel = torch.as_tensor(members, device=device)
                    idx = order_matrix[sel, t * B : t * B + size]
                losses, group_grads = step_fn(x_all[idx], y_all[idx], sel, members)
                total = total + losses.sum() * size
                if sel is None and not grads:
                    grads = group_grads
                else:
                    rows = torch.as_tensor(members, device=device)
                    for name, g in group_grads.items():
                        full = grads.get(name)
                        if full is None:
                            full = grads[name] = torch.zeros_like(params[name])
                        full.index_add_(0, rows, g)
            optimizer.step(None if ok.all() else torch.as_tensor(ok, device=device), grads=grads)
        progress.advance("population", loss=round(float(total) / max(int(sizes.sum()), 1), 5), epoch=epoch + 1)
    progress.finish("population")
    with torch.no_grad():
        for i, model in enumerate(models):
            state = {n: v[i].detach().clone() for n, v in params.items()}
            state.update({n: v[i].clone() for n, v in buffers.items()})
            model.load_state_dict(state)
            model.eval()
    return models


def _vmap_step_fn(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    seeds: Sequence[int],
    device: torch.device,
    transform: StackedBatchTransform | None,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, list[int]], tuple[torch.Tensor, dict]]:
    """A step function over ``vmap(functional_call)``: per-model losses and autograd's gradients."""
    base = stackable(copy.deepcopy(model).to("meta")).train()

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    batched_forward = vmap(forward, randomness=vmap_randomness(base))
    criterion = nn.CrossEntropyLoss(reduction="none")
    if transform is not None:
        # Batch transforms (PGD) see the models in eval mode, as pgd_linf puts a single model in eval mode.
        base_eval = stackable(copy.deepcopy(model).to("meta")).eval()
        eval_forward = vmap(lambda p, b, x: functional_call(base_eval, (p, b), (x,)))
        transform_gens = [transform_generator(s, device) for s in seeds]

    def step(
        xb: torch.Tensor, yb: torch.Tensor, sel: torch.Tensor | None, members: list[int]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if sel is None:
            p, b = params, buffers
        else:
            p = {n: v.index_select(0, sel) for n, v in params.items()}
            b = {n: v.index_select(0, sel) for n, v in buffers.items()}
        if transform is not None:
            frozen = {n: v.detach() for n, v in p.items()}
            xb, yb = transform(lambda xx: eval_forward(frozen, b, xx), xb, yb, [transform_gens[k] for k in members])
        logits = batched_forward(p, b, xb)
        per_model = criterion(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1)).view(xb.shape[0], xb.shape[1])
        losses = per_model.mean(1)
        for v in params.values():
            v.grad = None
        losses.sum().backward()
        if sel is not None:
            with torch.no_grad():
                for n, v in b.items():
                    buffers[n].index_copy_(0, sel, v)
            # autograd accumulated into the full stacked tensors: return the members' rows
            grads = {n: v.grad.index_select(0, sel) for n, v in params.items() if v.grad is not None}
        else:
            grads = {n: v.grad for n, v in params.items() if v.grad is not None}
        return losses.detach(), grads

    return step
