"""Training populations of models: K copies of one architecture, each on its own data subset and seed.

LiRA shadow models, distribution-inference populations and repeated-seed baselines all need many small
models trained the same way. :func:`train_population` trains them as **one stacked ensemble** when it can
(``torch.func.stack_module_state`` + ``vmap`` over ``functional_call``) and falls back to a plain loop of
:meth:`amulet.recipes.Recipe.train` otherwise.

Equivalence with sequential training
------------------------------------
Model ``k`` trained batched follows exactly the procedure of
``recipe.train(model_factory, data.subset(subsets[k]), seed=seeds[k])``:

* the recipe's data stages (outlier removal) run first, per model, with the model's own rows and seed
  (:meth:`~amulet.recipes.Recipe.prepare_data`), and its post stages (watermarking) run last, per model
  (:meth:`~amulet.recipes.Recipe.finish_model`); the training in between is :func:`amulet.utils.train_model`'s:

* initial weights: ``seeded_init(model_factory, seeds[k])``;
* per epoch, the batch order is ``torch.randperm(n_k, generator=make_generator(seeds[k]))``, cut into
  mini-batches of ``config.batch_size``; with BatchNorm a final batch of one sample is skipped;
* batch stages (adversarial training) transform each model's mini-batch through their
  ``stacked_transform`` against the models in eval mode, with each model's own transform generator
  (:func:`amulet.utils._training.transform_generator`), before the step;
* loss: mean cross-entropy over the model's own mini-batch.

A recipe whose loop stage gives ``train_stacked`` (DP-SGD: :func:`~amulet.membership_inference.defenses.
dp_train_stacked`) trains through it, after the data stages and before the post stages. Other loop stages
(adversarial debiasing), and stages that change the model's structure outside a stacked loop, train one
model at a time (:meth:`~amulet.recipes.Recipe.stacking_reason` says why).

Same procedure is not always same bits: stacked and single-model kernels round differently (about 1e-7).
Plain training keeps that gap at float level, but PGD takes the *sign* of input gradients, and a sign
that flips on a near-zero gradient moves an input by a whole step; with BatchNorm (whose preceding bias
has a zero gradient up to rounding, which Adam scales up to full steps) the gap grows further. Stacked and
sequential adversarially trained models then agree in accuracy (``bench_population``: within 0.1 point
on census) rather than weight for weight; without BatchNorm they agree to 1e-5 (tested).

The K losses are summed before one backward pass. Models share no parameters, so the gradient of the sum
with respect to model ``k``'s slice of a stacked parameter is exactly the gradient of model ``k``'s own
loss.

The optimizer is :class:`StackedOptimizer`, a re-implementation of ``torch.optim.Adam`` / ``torch.optim.SGD``
(same formulas, same order of operations) over the stacked ``(K, ...)`` tensors. Both optimizers are
elementwise, so running them on a stacked tensor is the same as running them on each slice — *if* every
model takes a step every time. That is why ``torch.optim`` itself is not used on the stacked tensors:
subsets may have different sizes, so at the end of an epoch some models have no batch (or a skipped
batch of one) while others still step. ``StackedOptimizer`` keeps a step counter per model (Adam's bias
correction depends on it) and leaves the parameters and moments of inactive models untouched, as
``torch.optim`` would by not being called for them.

Models whose current batch sizes differ are forwarded in separate ``vmap`` groups (one per distinct
batch size, almost always just one), so no padding ever enters a BatchNorm batch statistic.

BatchNorm
---------
BatchNorm is handled functionally: running statistics are stacked buffers, passed to ``vmap`` batched
along the model axis, and BatchNorm's in-place running-stat update writes into each model's own slice.
Batch statistics are computed per model over its own (unpadded) mini-batch, so BatchNorm models train
exactly as they do sequentially. Models with modules outside :data:`BATCHABLE_MODULES` (or whose
forward fails under ``vmap``) fall back to the sequential loop; the reason is logged and reported as
:attr:`PopulationResult.mode`.

Caching
-------
With ``cache_dir``, each model is stored as a safetensors state dict under a key that hashes everything
that determines it: the architecture (class, module structure and parameter shapes), the recipe key
(optimizer, epochs, batch size, defense stages and their parameters), a SHA-256 of the model's own training
rows (x, y), its seed and the trainer mode. Changing any of them trains a new model.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from amulet.recipes import Recipe
    >>> from amulet.utils import TensorData, TrainConfig, train_population
    >>> data = TensorData(torch.randn(64, 5), torch.randint(0, 2, (64,)))
    >>> result = train_population(lambda: nn.Linear(5, 2), data, [torch.arange(32), torch.arange(32, 64)],
    ...                           recipe=Recipe(TrainConfig(epochs=1, batch_size=16)), seeds=[1, 2])
    >>> result.mode, len(result.models)
    ('batched', 2)
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from amulet.progress import Progress, resolve_progress
from amulet.utils._seeding import make_generator, seeded_init
from amulet.utils._tensordata import TensorData
from amulet.utils._training import StackedBatchTransform, TrainConfig, has_batchnorm, transform_generator

if TYPE_CHECKING:
    from amulet.recipes import Recipe

__all__ = [
    "BATCHABLE_MODULES",
    "PopulationResult",
    "StackedOptimizer",
    "architecture_fingerprint",
    "batchable_reason",
    "population_logits",
    "tensor_fingerprint",
    "train_population",
]

logger = logging.getLogger(__name__)

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


@dataclass
class PopulationResult:
    """Models trained by :func:`train_population`.

    Attributes:
        models: The K trained models, in eval mode, on the requested device, in the order of ``subsets``.
        mode: ``"batched"`` (one stacked ensemble), ``"sequential"`` (a loop of ``recipe.train``) or
            ``"cached"`` (every model came from ``cache_dir``).
        reason: Why the sequential loop was used (empty when batched).
        n_cached: How many models were loaded from ``cache_dir``.
    """

    models: list[nn.Module]
    mode: Literal["batched", "sequential", "cached"]
    reason: str = ""
    n_cached: int = 0


# --------------------------------------------------------------------------------------------------------------
# fingerprints (cache keys)


def tensor_fingerprint(*tensors: torch.Tensor | np.ndarray | None) -> str:
    """SHA-256 (hex) of the dtypes, shapes and bytes of ``tensors`` (None allowed)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none|")
            continue
        arr = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        h.update(f"{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def architecture_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's class, module structure (``repr``) and state-dict names, shapes and dtypes.

    Two models with the same fingerprint accept each other's state dicts and compute the same function of
    them; any change of layer sizes, normalisation or activation changes it.
    """
    cls = type(model)
    parts = [
        f"{cls.__module__}.{cls.__qualname__}",
        repr(model),
        json.dumps([(k, list(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# batchability


def _is_graph_model(model: nn.Module) -> bool:
    """An uploaded graph (:class:`amulet.io.GraphModel`): its modules hold parameters, the graph computes."""
    return hasattr(model, "has_dropout") and hasattr(model, "graph") and hasattr(model, "info")


def _randomness(model: nn.Module) -> str:
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
    if _is_graph_model(model):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            return "only float32 models are stacked"
        return ""
    for name, module in model.named_modules():
        if len(list(module.children())) == 0 and not isinstance(module, BATCHABLE_MODULES):
            return f"module {name or '<root>'} of type {type(module).__name__} is not known to be vmap-safe"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "only float32 models are stacked"
    return ""


# --------------------------------------------------------------------------------------------------------------
# the stacked optimizer


class StackedOptimizer:
    """Adam or SGD (``torch.optim`` semantics) over stacked ``(K, ...)`` parameters, one step count per model.

    ``step(active)`` updates only the models where ``active`` is True; inactive models keep their
    parameters, moments and step counts, exactly as if their own ``torch.optim`` optimizer had not been
    called. The formulas and their order follow ``torch.optim.Adam`` (``amsgrad=False``, L2 weight decay
    added to the gradient) and ``torch.optim.SGD`` (``dampening=0``, ``nesterov=False``; a zero-initialised
    momentum buffer equals torch's first-step ``buf = grad``).

    Args:
        params: Stacked leaf tensors (``requires_grad=True``), first dimension K.
        config: Optimizer name, learning rate, weight decay and momentum.
        n_models: K.
    """

    def __init__(self, params: dict[str, torch.Tensor], config: TrainConfig, n_models: int) -> None:
        self.params = params
        self.config = config
        self.n_models = n_models
        device = next(iter(params.values())).device if params else torch.device("cpu")
        self.device = device
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

    def _bias_terms(
        self, lr: float, beta1: float, beta2: float, p: torch.Tensor, shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-model Adam step size ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)``, shaped to broadcast."""
        steps = torch.as_tensor(np.maximum(self.steps, 1), device=self.device)
        step_size = (lr / (1 - beta1**steps)).to(p.dtype).view(shape)
        bc2_sqrt = (1 - beta2**steps).sqrt().to(p.dtype).view(shape)
        return step_size, bc2_sqrt

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One optimizer step for the models where ``active`` (bool, shape (K,)) is True (all when None)."""
        active_np = None if active is None else active.detach().cpu().numpy().astype(bool)
        all_active = active_np is None or bool(active_np.all())
        if all_active:
            self.steps += 1
        else:
            self.steps += active_np  # type: ignore[arg-type]
        cfg = self.config
        lo, hi = float(self.steps.min()), float(self.steps.max())
        uniform_step = lo if lo == hi and lo > 0 else None
        for name, p in self.params.items():
            grad = p.grad
            if grad is None:
                continue
            shape = (self.n_models,) + (1,) * (p.dim() - 1)
            if cfg.weight_decay:
                grad = grad.add(p, alpha=cfg.weight_decay)
            state = self.state[name]
            if cfg.optimizer == "adam":
                beta1, beta2, eps = 0.9, 0.999, 1e-8
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if all_active:
                    # torch.optim.Adam's single-tensor formulas, in place.
                    exp_avg.lerp_(grad, 1 - beta1)
                    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    if uniform_step is not None:
                        step_size = cfg.lr / (1 - beta1**uniform_step)
                        bc2_sqrt = math.sqrt(1 - beta2**uniform_step)
                        denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
                        p.addcdiv_(exp_avg, denom, value=-step_size)
                    else:
                        step_t, bc2_t = self._bias_terms(cfg.lr, beta1, beta2, p, shape)
                        denom = (exp_avg_sq.sqrt() / bc2_t).add_(eps).div_(step_t)
                        p.addcdiv_(exp_avg, denom, value=-1.0)
                else:
                    mask = active.view(shape)  # type: ignore[union-attr]
                    new_avg = exp_avg.lerp(grad, 1 - beta1)
                    new_sq = exp_avg_sq.mul(beta2).addcmul_(grad, grad, value=1 - beta2)
                    step_t, bc2_t = self._bias_terms(cfg.lr, beta1, beta2, p, shape)
                    denom = (new_sq.sqrt() / bc2_t).add_(eps)
                    new_p = p - step_t * new_avg / denom
                    exp_avg.copy_(torch.where(mask, new_avg, exp_avg))
                    exp_avg_sq.copy_(torch.where(mask, new_sq, exp_avg_sq))
                    p.copy_(torch.where(mask, new_p, p))
            else:
                if all_active:
                    if cfg.momentum:
                        grad = state["momentum_buffer"].mul_(cfg.momentum).add_(grad)
                    p.add_(grad, alpha=-cfg.lr)
                else:
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


# --------------------------------------------------------------------------------------------------------------
# batched training


class _StackableBatchNorm(nn.Module):
    """BatchNorm written with plain reductions, for ``vmap`` over stacked models.

    Same parameters, buffers and formulas as ``nn.BatchNorm{1,2,3}d`` (normalise with the biased batch
    variance, update the running variance with the unbiased one, ``momentum=None`` = cumulative average);
    ``vmap`` batches these elementwise ops and reductions efficiently, whereas its rule for
    ``torch.batch_norm`` with batched running statistics is slow on CPU.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum = bn.eps, bn.momentum
        self.track_running_stats = bn.track_running_stats
        self.weight, self.bias = bn.weight, bn.bias
        self.running_mean, self.running_var = bn.running_mean, bn.running_var
        self.num_batches_tracked = bn.num_batches_tracked
        self.training = bn.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        use_batch = self.training or self.running_mean is None
        if use_batch:
            mean = x.mean(dim=dims)
            # Two-pass variance: as stable as torch.var and several times faster on CPU for this layout.
            centered = x - mean.view(shape)
            var = (centered * centered).mean(dim=dims)
            if self.training and self.running_mean is not None and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                    if self.momentum is None:
                        factor = 1.0 / self.num_batches_tracked.to(x.dtype)  # type: ignore[union-attr]
                    else:
                        factor = torch.as_tensor(self.momentum, dtype=x.dtype, device=x.device)
                    n = x.numel() / x.shape[1]
                    self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                    self.running_var.mul_(1 - factor).add_(var.detach() * (n / max(n - 1, 1)) * factor)  # type: ignore[union-attr]
        else:
            mean, var = self.running_mean, self.running_var  # type: ignore[assignment]
            centered = x - mean.view(shape)  # type: ignore[union-attr]
        y = centered * torch.rsqrt(var.view(shape) + self.eps)  # type: ignore[union-attr]
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)  # type: ignore[union-attr]
        return y


def _stackable(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm replaced (in place) by :class:`_StackableBatchNorm`."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _StackableBatchNorm(module))
    return model


def _train_batched(
    models: list[nn.Module],
    data: TensorData,
    subsets: list[torch.Tensor],
    seeds: list[int],
    config: TrainConfig,
    device: torch.device,
    progress: Progress,
    transform: StackedBatchTransform | None = None,
) -> list[nn.Module]:
    from torch.func import functional_call, stack_module_state, vmap

    K = len(models)
    for m in models:
        m.to(device).train()
    stacked_params, stacked_buffers = stack_module_state(models)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in stacked_params.items()}
    buffers = {k: v.detach().clone() for k, v in stacked_buffers.items()}
    has_bn = has_batchnorm(models[0])
    base = _stackable(copy.deepcopy(models[0]).to("meta")).train()
    randomness = _randomness(base)

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    batched_forward = vmap(forward, randomness=randomness)
    if transform is not None:
        # Batch transforms (PGD) see the models in eval mode, as pgd_linf puts a single model in eval mode.
        base_eval = _stackable(copy.deepcopy(models[0]).to("meta")).eval()
        eval_forward = vmap(lambda p, b, x: functional_call(base_eval, (p, b), (x,)))
        transform_gens = [transform_generator(s, device) for s in seeds]
    optimizer = StackedOptimizer(params, config, K)
    criterion = nn.CrossEntropyLoss(reduction="none")
    x_all, y_all = data.x.to(device), data.y.to(device)
    generators = [make_generator(s) for s in seeds]
    sizes = np.array([len(s) for s in subsets])
    B = config.batch_size
    n_steps = -(-int(sizes.max()) // B)
    equal = bool((sizes == sizes[0]).all())
    progress.start("population", config.epochs, f"training {K} models (batched)")
    for epoch in range(config.epochs):
        orders = [subsets[k][torch.randperm(int(sizes[k]), generator=generators[k])] for k in range(K)]
        order_matrix = torch.stack(orders).to(device) if equal else None
        total = 0.0
        for t in range(n_steps):
            batch_sizes = np.clip(sizes - t * B, 0, B)
            ok = batch_sizes >= (2 if has_bn else 1)
            if not ok.any():
                continue
            groups: dict[int, list[int]] = {}
            for k in np.flatnonzero(ok):
                groups.setdefault(int(batch_sizes[k]), []).append(int(k))
            loss = None
            for size, members in groups.items():
                if len(members) == K:
                    if order_matrix is not None:
                        idx = order_matrix[:, t * B : t * B + size]
                    else:
                        idx = torch.stack([orders[k][t * B : t * B + size] for k in range(K)]).to(device)
                    p, b = params, buffers
                    sel = None
                else:
                    idx = torch.stack([orders[k][t * B : t * B + size] for k in members]).to(device)
                    sel = torch.as_tensor(members, device=device)
                    p = {n: v.index_select(0, sel) for n, v in params.items()}
                    b = {n: v.index_select(0, sel) for n, v in buffers.items()}
                xb, yb = x_all[idx], y_all[idx]
                if transform is not None:
                    frozen = {n: v.detach() for n, v in p.items()}
                    xb, yb = transform(
                        lambda xx, frozen=frozen, b=b: eval_forward(frozen, b, xx),  # type: ignore[misc]
                        xb,
                        yb,
                        [transform_gens[k] for k in members],
                    )
                logits = batched_forward(p, b, xb)
                per_model = criterion(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1)).view(len(members), size)
                group_loss = per_model.mean(1).sum()
                loss = group_loss if loss is None else loss + group_loss
                total += float(per_model.sum().detach())
                if sel is not None:
                    with torch.no_grad():
                        for n, v in b.items():
                            buffers[n].index_copy_(0, sel, v)
            optimizer.zero_grad()
            assert loss is not None
            loss.backward()
            optimizer.step(None if ok.all() else torch.as_tensor(ok, device=device))
        progress.advance("population", loss=round(total / max(int(sizes.sum()), 1), 5), epoch=epoch + 1)
    progress.finish("population")
    with torch.no_grad():
        for i, model in enumerate(models):
            state = {n: v[i].detach().clone() for n, v in params.items()}
            state.update({n: v[i].clone() for n, v in buffers.items()})
            model.load_state_dict(state)
            model.eval()
    return models


def _check_batched_forward(model: nn.Module, x: torch.Tensor, device: torch.device) -> str:
    """Try a stacked forward/backward of two copies on two rows; return an error text or ''."""
    from torch.func import functional_call, stack_module_state, vmap

    try:
        copies = [copy.deepcopy(model).to(device).train() for _ in range(2)]
        params, buffers = stack_module_state(copies)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        buffers = {k: v.detach().clone() for k, v in buffers.items()}
        base = copy.deepcopy(model).to("meta").train()
        randomness = _randomness(base)
        xb = x[:2].to(device).unsqueeze(0).expand(2, *x[:2].shape).contiguous()
        out = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)), randomness=randomness)(params, buffers, xb)
        out.float().sum().backward()
    except Exception as exc:  # any failure means: train sequentially
        return f"stacked forward failed ({type(exc).__name__}: {exc})"
    return ""


# --------------------------------------------------------------------------------------------------------------
# caching


def _model_key(arch: str, recipe_key: str, data_hash: str, seed: int, mode: str) -> str:
    text = json.dumps(
        {"architecture": arch, "recipe": recipe_key, "data": data_hash, "seed": int(seed), "trainer": mode},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_FLOAT_ATTRIBUTES = ("privacy_epsilon_", "privacy_delta_")


def _replacements(reference: nn.Module, model: nn.Module) -> list[dict[str, object]]:
    """Normalisation modules that training replaced (DP-SGD: BatchNorm -> GroupNorm), as rebuild recipes."""
    old = dict(reference.named_modules())
    out: list[dict[str, object]] = []
    for name, module in model.named_modules():
        if name in old and type(old[name]) is not type(module) and isinstance(module, nn.GroupNorm):
            out.append(
                {"name": name, "groups": module.num_groups, "channels": module.num_channels, "affine": module.affine}
            )
    return out


def _apply_replacements(model: nn.Module, replacements: list[dict[str, object]]) -> nn.Module:
    for r in replacements:
        name = str(r["name"])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.GroupNorm(int(r["groups"]), int(r["channels"]), affine=bool(r["affine"])))  # type: ignore[call-overload]
    return model


def _save_model(path: Path, model: nn.Module, reference: nn.Module) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture_repr": repr(model), "replacements": json.dumps(_replacements(reference, model))}
    for attr in _FLOAT_ATTRIBUTES:
        if getattr(model, attr, None) is not None:
            meta[attr] = repr(float(getattr(model, attr)))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_model(path: Path, model_factory: Callable[[], nn.Module], device: torch.device) -> nn.Module | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # a corrupt or foreign file is a cache miss
        logger.warning("ignoring unreadable cached model %s (%s)", path, exc)
        return None
    # A recipe may change the architecture (DP-SGD replaces BatchNorm by GroupNorm); rebuild it.
    model = _apply_replacements(model_factory(), json.loads(meta.get("replacements", "[]")))
    if meta.get("architecture_repr") not in (None, repr(model)):
        return None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        return None
    for attr in _FLOAT_ATTRIBUTES:
        if attr in meta:
            setattr(model, attr, float(meta[attr]))
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------------------------
# public entry points


def train_population(
    model_factory: Callable[[], nn.Module],
    data: TensorData,
    subsets: Sequence[torch.Tensor | np.ndarray | Sequence[int]] | None = None,
    *,
    recipe: Recipe | TrainConfig,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    mode: Literal["auto", "batched", "sequential"] | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> PopulationResult:
    """Train one model per (subset, seed) pair, batched as one stacked ensemble when possible.

    Args:
        model_factory: Returns a fresh, untrained model (the architecture). Called under
            :func:`amulet.utils.seeded_init` with each seed, as :meth:`Recipe.train` does.
        data: The pool of rows; each model trains on ``data.subset(subsets[k])``.
        subsets: One index array (into ``data``) per model; None trains every model on all of ``data``
            (then the models differ only by seed).
        recipe: How each model is trained. A :class:`~amulet.utils.TrainConfig` means the plain recipe.
            Recipes whose :meth:`~amulet.recipes.Recipe.stacking_reason` is empty are batched; the others
            (DP-SGD, adversarial debiasing) run ``recipe.train`` in a loop.
        seeds: One seed per model (same length as ``subsets``); derive them with
            :func:`amulet.utils.derive_seed`.
        device: Torch device for training and for the returned models.
        mode: None reads the ``population_mode`` setting (``AMULET_POPULATION_MODE``, default ``"auto"``);
            ``"auto"`` batches when the recipe and the architecture allow it; ``"batched"``
            requires it (ValueError otherwise); ``"sequential"`` always loops.
        cache_dir: When given, models are loaded from / saved to this directory, keyed by architecture,
            recipe, training rows, seed and trainer mode.
        progress: Progress reporter (task ``"population"``); silent when None.

    Returns:
        A :class:`PopulationResult` with the K models in eval mode.

    Raises:
        ValueError: if ``subsets`` and ``seeds`` differ in length, or ``mode="batched"`` is impossible.
    """
    from amulet.recipes import Recipe

    if isinstance(recipe, TrainConfig):
        recipe = Recipe(recipe)
    if mode is None:
        from amulet.settings import get_settings

        mode = get_settings().population_mode
    progress = resolve_progress(progress)
    device = torch.device(device)
    seeds = [int(s) for s in seeds]
    if subsets is None:
        subsets = [torch.arange(len(data))] * len(seeds)
    index = [torch.as_tensor(np.asarray(s), dtype=torch.long).reshape(-1) for s in subsets]
    if len(index) != len(seeds):
        raise ValueError(
            f"train_population needs one seed per subset. Got {len(index)} subsets and {len(seeds)} seeds instead."
        )
    if mode not in ("auto", "batched", "sequential"):
        raise ValueError(
            f"The 'mode' parameter of train_population must be one of {{'auto', 'batched', 'sequential'}}. "
            f"Got {mode!r} instead."
        )
    K = len(index)
    if K == 0:
        return PopulationResult([], "batched")

    probe = seeded_init(model_factory, seeds[0])
    reason = ""
    if mode == "sequential":
        reason = "sequential mode requested"
    elif why := recipe.stacking_reason():
        reason = f"recipe {recipe.name!r} cannot be stacked: {why}"
    else:
        reason = batchable_reason(probe) or _check_batched_forward(probe, data.x[:2], device)
    if mode == "batched" and reason:
        raise ValueError(f"train_population cannot batch this population: {reason}.")
    resolved = "sequential" if reason else "batched"

    models: list[nn.Module | None] = [None] * K
    paths: list[Path | None] = [None] * K
    if cache_dir is not None:
        arch = architecture_fingerprint(probe)
        for k in range(K):
            data_hash = tensor_fingerprint(data.x[index[k]], data.y[index[k]])
            key = _model_key(arch, recipe.key, data_hash, seeds[k], resolved)
            paths[k] = Path(cache_dir) / f"model-{key}.safetensors"
            if paths[k].exists():  # type: ignore[union-attr]
                models[k] = _load_model(paths[k], model_factory, device)  # type: ignore[arg-type]
    todo = [k for k in range(K) if models[k] is None]
    n_cached = K - len(todo)
    if todo:
        if resolved == "batched":
            trained = _train_stacked_recipe(model_factory, probe, data, index, seeds, todo, recipe, device, progress)
        else:
            logger.info("training %d models sequentially: %s", len(todo), reason)
            trained = []
            progress.start("population", len(todo), f"training {len(todo)} models (sequential)")
            for k in todo:
                trained.append(recipe.train(model_factory, data.subset(index[k]), seed=seeds[k], device=device))
                progress.advance("population")
            progress.finish("population")
        for k, model in zip(todo, trained):
            models[k] = model
            if paths[k] is not None:
                _save_model(paths[k], model, probe)  # type: ignore[arg-type]
    out_mode: Literal["batched", "sequential", "cached"] = resolved if todo else "cached"  # type: ignore[assignment]
    return PopulationResult([m for m in models if m is not None], out_mode, reason, n_cached)


def _train_stacked_recipe(
    model_factory: Callable[[], nn.Module],
    probe: nn.Module,
    data: TensorData,
    index: list[torch.Tensor],
    seeds: list[int],
    todo: list[int],
    recipe: Recipe,
    device: torch.device,
    progress: Progress,
) -> list[nn.Module]:
    """Models ``todo`` of the population, as ``recipe.train`` makes them, trained as one stacked ensemble."""
    subsets = [index[k] for k in todo]
    own_seeds = [seeds[k] for k in todo]
    prepared: list[TensorData] | None = None
    if any(s.kind == "data" for s in recipe.stages):
        # Each model's data stages see that model's rows and seed, as in recipe.train; the ensemble then
        # trains on the concatenation of the results, each model on its own slice.
        prepared = [
            recipe.prepare_data(model_factory, data.subset(idx), seed=seed, device=device, progress=progress)
            for idx, seed in zip(subsets, own_seeds)
        ]
        offsets = np.cumsum([0] + [len(d) for d in prepared])
        data = TensorData(torch.cat([d.x for d in prepared]), torch.cat([d.y for d in prepared]))
        subsets = [torch.arange(int(a), int(b)) for a, b in itertools.pairwise(offsets)]
    fresh = [probe if k == 0 else seeded_init(model_factory, seeds[k]) for k in todo]
    loop = recipe.loop_stage
    if loop is not None and loop.train_stacked is not None:
        datas = prepared if prepared is not None else [data.subset(idx) for idx in subsets]
        models = loop.train_stacked(
            fresh, datas, config=recipe.config, seeds=own_seeds, device=device, progress=progress
        )
    else:
        models = _train_batched(
            fresh, data, subsets, own_seeds, recipe.config, device, progress, transform=recipe.stacked_batch_transform
        )
    if any(s.kind == "post" for s in recipe.stages):
        models = [
            recipe.finish_model(
                model,
                prepared[i] if prepared is not None else data.subset(subsets[i]),
                seed=own_seeds[i],
                device=device,
                progress=progress,
            )
            for i, model in enumerate(models)
        ]
    return models


@torch.no_grad()
def population_logits(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits of every model (eval mode) on ``x``: a ``(K, n, n_classes)`` tensor on the CPU.

    Models with the same architecture are evaluated as one stacked ensemble; otherwise one by one.
    """
    from torch.func import functional_call, stack_module_state, vmap

    from amulet.utils._evaluation import predict_logits

    device = torch.device(device)
    models = list(models)
    if not models:
        return torch.empty(0)
    same = len({architecture_fingerprint(m) for m in models}) == 1 and not batchable_reason(models[0])
    if not same or len(models) == 1:
        return torch.stack([predict_logits(m, x, batch_size=batch_size, device=device) for m in models])
    for m in models:
        m.to(device).eval()
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta").eval()
    fn = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)), in_dims=(0, 0, None))
    outs = [fn(params, buffers, x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs, dim=1)
