"""Training populations of models: K copies of one architecture, each on its own data subset and seed.

LiRA shadow models, distribution-inference populations and repeated-seed baselines all need many small
models trained the same way. :func:`train_population` trains them as **one stacked ensemble** when it can
and falls back to a plain loop of ``recipe.train`` otherwise. The pieces live in modules of their own:

* :mod:`amulet.utils._stacked_training`: the batched loop and which architectures it accepts;
* :mod:`amulet.utils._stacked_chain`: hand-written stacked kernels for MLP chains (Linear / BatchNorm1d /
  ReLU / Dropout), :mod:`amulet.utils._stackable_batchnorm`: the BatchNorm shim for ``vmap``;
* :mod:`amulet.utils._stacked_optimizer`: Adam / SGD over stacked parameters, one step count per model;
* :mod:`amulet.utils._fingerprints` and :mod:`amulet.utils._model_cache`: the cache keys and files;
* :mod:`amulet.utils._population_recipe`: what a recipe must offer (:class:`PopulationRecipe`; the defense
  layer's :class:`amulet.recipes.Recipe` implements it, so these utilities never import it).

Equivalence with sequential training
------------------------------------
Model ``k`` trained batched follows exactly the procedure of
``recipe.train(model_factory, data.subset(subsets[k]), seed=seeds[k])``:

* the recipe's data stages (outlier removal) run first, per model, with the model's own rows and seed
  (``recipe.prepare_data``), and its post stages (watermarking) run last, per model
  (``recipe.finish_model``); the training in between is :func:`amulet.utils.train_model`'s:

* initial weights: ``seeded_init(model_factory, seeds[k])``;
* per epoch, the batch order is ``torch.randperm(n_k, generator=make_generator(seeds[k]))``, cut into
  mini-batches of ``config.batch_size``; with BatchNorm a final batch of one sample is skipped;
* batch stages (adversarial training) transform each model's mini-batch through their
  ``stacked_transform`` against the models in eval mode, with each model's own transform generator
  (:func:`amulet.utils._training.transform_generator`), before the step;
* loss: mean cross-entropy over the model's own mini-batch.

A recipe with its own stacked loop (``recipe.stacked_loop``; DP-SGD's
:func:`~amulet.membership_inference.defenses.dp_train_stacked`, adversarial debiasing's stacked trainer) trains
through it, after the data stages and before the post stages. Recipes whose ``stacking_reason()`` is not empty
train one model at a time.

Same procedure is not always same bits: stacked and single-model kernels round differently (about 1e-7).
Plain training keeps that gap at float level, but PGD takes the *sign* of input gradients, and a sign
that flips on a near-zero gradient moves an input by a whole step; with BatchNorm (whose preceding bias
has a zero gradient up to rounding, which Adam scales up to full steps) the gap grows further. Stacked and
sequential adversarially trained models then agree in accuracy (``bench_population``: within 0.1 point
on census) rather than weight for weight; without BatchNorm they agree to 1e-5 (tested).

Models with modules the stacked kernels do not know (or whose forward fails under ``vmap``) fall back to
the sequential loop; the reason is logged and reported as :attr:`PopulationResult.reason`.

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
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from amulet.progress import Progress, resolve_progress
from amulet.settings import get_settings
from amulet.utils._evaluation import predict_logits
from amulet.utils._fingerprints import architecture_fingerprint, tensor_fingerprint
from amulet.utils._model_cache import load_model, model_key, save_model
from amulet.utils._population_recipe import PlainRecipe, PopulationRecipe
from amulet.utils._seeding import seeded_init
from amulet.utils._stacked_chain import StackedChain, chain_layers
from amulet.utils._stacked_optimizer import StackedOptimizer
from amulet.utils._stacked_training import (
    BATCHABLE_MODULES,
    batchable_reason,
    check_batched_forward,
    is_graph_model,
    train_stacked_models,
)
from amulet.utils._tensordata import TensorData
from amulet.utils._threads import layer1_threads
from amulet.utils._training import TrainConfig

__all__ = [
    "BATCHABLE_MODULES",
    "PopulationRecipe",
    "PopulationResult",
    "StackedOptimizer",
    "architecture_fingerprint",
    "batchable_reason",
    "population_logits",
    "tensor_fingerprint",
    "train_population",
]

logger = logging.getLogger(__name__)


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


def train_population(
    model_factory: Callable[[], nn.Module],
    data: TensorData,
    subsets: Sequence[torch.Tensor | np.ndarray | Sequence[int]] | None = None,
    *,
    recipe: PopulationRecipe | TrainConfig,
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
        recipe: How each model is trained: an :class:`amulet.recipes.Recipe` (any
            :class:`PopulationRecipe`), or a :class:`~amulet.utils.TrainConfig` for plain training.
            Recipes whose ``stacking_reason()`` is empty are batched; the others run ``recipe.train`` in a loop.
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
    plan: PopulationRecipe = PlainRecipe(recipe) if isinstance(recipe, TrainConfig) else recipe
    if mode is None:
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
    elif why := plan.stacking_reason():
        reason = f"recipe {plan.name!r} cannot be stacked: {why}"
    else:
        reason = batchable_reason(probe) or check_batched_forward(probe, data.x[:2], device)
    if mode == "batched" and reason:
        raise ValueError(f"train_population cannot batch this population: {reason}.")
    resolved = "sequential" if reason else "batched"

    models: list[nn.Module | None] = [None] * K
    paths: list[Path | None] = [None] * K
    if cache_dir is not None:
        arch = architecture_fingerprint(probe)
        for k in range(K):
            data_hash = tensor_fingerprint(data.x[index[k]], data.y[index[k]])
            key = model_key(arch, plan.key, data_hash, seeds[k], resolved)
            path = Path(cache_dir) / f"model-{key}.safetensors"
            paths[k] = path
            if path.exists():
                models[k] = load_model(path, model_factory, device)
    todo = [k for k in range(K) if models[k] is None]
    n_cached = K - len(todo)
    if todo:
        if resolved == "batched":
            # K stacked models make large matrix products, worth every free core; on a busy machine fewer
            # threads than cores avoid waiting on the busiest one (layer1_threads caps at the free cores)
            with layer1_threads():
                trained = _train_stacked_recipe(model_factory, probe, data, index, seeds, todo, plan, device, progress)
        else:
            logger.info("training %d models sequentially: %s", len(todo), reason)
            trained = []
            progress.start("population", len(todo), f"training {len(todo)} models (sequential)")
            for k in todo:
                trained.append(plan.train(model_factory, data.subset(index[k]), seed=seeds[k], device=device))
                progress.advance("population")
            progress.finish("population")
        for k, model in zip(todo, trained):
            models[k] = model
            target = paths[k]
            if target is not None:
                save_model(target, model, probe)
    out_mode: Literal["batched", "sequential", "cached"] = "cached" if not todo else resolved  # type: ignore[assignment]
    return PopulationResult([m for m in models if m is not None], out_mode, reason, n_cached)


def _train_stacked_recipe(
    model_factory: Callable[[], nn.Module],
    probe: nn.Module,
    data: TensorData,
    index: list[torch.Tensor],
    seeds: list[int],
    todo: list[int],
    recipe: PopulationRecipe,
    device: torch.device,
    progress: Progress,
) -> list[nn.Module]:
    """Models ``todo`` of the population, as ``recipe.train`` makes them, trained as one stacked ensemble."""
    subsets = [index[k] for k in todo]
    own_seeds = [seeds[k] for k in todo]
    prepared: list[TensorData] | None = None
    if recipe.has_data_stages:
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
    loop = recipe.stacked_loop
    if loop is not None:
        datas = prepared if prepared is not None else [data.subset(idx) for idx in subsets]
        models = loop(fresh, datas, config=recipe.config, seeds=own_seeds, device=device, progress=progress)
    else:
        models = train_stacked_models(
            fresh, data, subsets, own_seeds, recipe.config, device, progress, transform=recipe.stacked_batch_transform
        )
    if recipe.has_post_stages:
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

    Models with the same architecture are evaluated as one stacked ensemble (MLP chains through the
    stacked kernels, whose first layer is one matrix product for all K models); otherwise one by one.
    """
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
    layers = None if is_graph_model(models[0]) else chain_layers(models[0])
    if layers is not None:
        chain = StackedChain(layers, {k: v.detach() for k, v in params.items()}, buffers)
        return chain.eval_logits(x.to(device)).float().cpu()
    base = copy.deepcopy(models[0]).to("meta").eval()
    fn = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)), in_dims=(0, 0, None))
    outs = [fn(params, buffers, x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs, dim=1)
