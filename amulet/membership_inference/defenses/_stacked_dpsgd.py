"""DP-SGD for a population of K models at once, equal to training each with :func:`dp_train`.

Model ``k`` follows exactly the procedure :func:`~amulet.membership_inference.defenses.dp_train` runs
through Opacus for it (same seeds, same random draws, in the same order):

* the model is made DP-compatible first (:func:`make_dp_compatible`: BatchNorm -> GroupNorm); an uploaded
  graph (:class:`amulet.io.GraphModel`) trains as it is through ``functional_call``, and one with BatchNorm
  is refused (:class:`~amulet.exceptions.NotApplicableError`, as :func:`dp_train` does);
* Poisson sampling as Opacus' ``DPDataLoader``: sample rate ``q = 1 / ceil(n / B)``, ``int(1 / q)`` steps
  per epoch, each drawing ``torch.rand(n, generator=sampling_k) < q``, after the int64 that torch's
  DataLoader draws from the same generator when each epoch's iterator starts;
* per-sample gradients of the per-sample cross-entropy, clipped to ``max_grad_norm`` with Opacus' factor
  ``min(1, C / (||g_i|| + 1e-6))`` (the norm over all parameters), summed;
* the noise multiplier given, or the one ``target_epsilon`` picks for model ``k``'s own sampling rate and
  steps (:func:`noise_for_epsilon`, as :func:`dp_train` does);
* the training config updated by the stage's own training parameters (:func:`dp_stage_config`);
* Gaussian noise of std ``noise_multiplier * C`` drawn from ``noise_k``, one ``torch.normal`` per parameter
  in parameter order, then division by Opacus' expected batch size ``int(n * q)``;
* the recipe's optimizer step (Adam / SGD semantics, :class:`~amulet.utils.StackedOptimizer`), taken on
  every step, empty batches included (zero gradient plus noise), as Opacus does;
* epsilon from the same accountant over the same history (:func:`spent_epsilon`).

What differs is how the per-sample gradients are computed: ``torch.func`` (``vmap`` over models of ``vmap``
over samples of ``grad``) instead of Opacus' hooks, so the two agree to float rounding. Models whose batch
at a step is smaller than the largest are padded with their first row, whose clip factor is zero.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F

from amulet.exceptions import InvalidParameterError
from amulet.membership_inference.defenses._dp_accounting import (
    DELTA_ATTRIBUTE,
    EPSILON_ATTRIBUTE,
    NOISE_ATTRIBUTE,
    noise_for_epsilon,
    poisson_schedule,
    spent_epsilon,
)
from amulet.membership_inference.defenses._dp_models import (
    is_uploaded_graph,
    make_dp_compatible,
    refuse_unless_dp_trainable,
)
from amulet.membership_inference.defenses._dpsgd import dp_stage_config
from amulet.progress import Progress, resolve_progress
from amulet.utils import StackedOptimizer, TensorData, derive_seed, make_generator

__all__ = ["dp_sgd_stacked_loop", "dp_train_stacked"]


def _accountant_history(accountant: str, noise_multiplier: float, sample_rate: float, steps: int) -> tuple:
    """The accountant's history after ``steps`` steps, as Opacus records it (hashable)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    for _ in range(steps):
        acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return tuple(tuple(entry) for entry in acc.history)


def dp_train_stacked(
    models: Sequence[nn.Module],
    datas: Sequence[TensorData],
    *,
    config: Any,
    seeds: Sequence[int],
    noise_multiplier: float | None = None,
    max_grad_norm: float,
    delta: float,
    accountant: str = "rdp",
    target_epsilon: float | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> list[nn.Module]:
    """Train ``models[k]`` on ``datas[k]`` with DP-SGD and seed ``seeds[k]``, all K as one stacked ensemble.

    Args:
        models: K freshly initialised models of one architecture (as ``seeded_init`` made them).
        datas: One training set per model.
        config: The recipe's :class:`~amulet.utils.TrainConfig` (optimizer, learning rate, epochs, batch size
            = expected Poisson batch size).
        seeds: One seed per model (sampling and noise generators derive from it, as in :func:`dp_train`).
        noise_multiplier: Noise std relative to ``max_grad_norm``; required unless ``target_epsilon`` is given.
        max_grad_norm: Per-sample clipping norm C.
        delta: Target delta of the reported epsilon.
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        target_epsilon: If given, model ``k``'s noise multiplier is the smallest whose epsilon after its
            training is at most this (``noise_multiplier`` is then ignored).
        device: Torch device.
        progress: Progress reporter (task ``"dp_sgd"``).

    Returns:
        The K trained, DP-compatible models in eval mode, each carrying ``privacy_epsilon_``,
        ``privacy_delta_`` and ``privacy_noise_multiplier_``.

    Raises:
        InvalidParameterError: neither ``noise_multiplier`` nor ``target_epsilon``, or an unreachable target.
        NotApplicableError: an uploaded graph with BatchNorm (the message says why and what to use instead).
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    K = len(models)
    if not (len(datas) == len(seeds) == K):
        raise ValueError(
            f"dp_train_stacked needs one dataset and one seed per model; got {K}, {len(datas)}, {len(seeds)}."
        )
    for m in models:
        refuse_unless_dp_trainable(m)
    # An uploaded graph is trained as it is (make_dp_compatible returns it unchanged): copy it, as
    # make_dp_compatible copies the other models, so that the caller's modules are not trained in place.
    fixed = [(copy.deepcopy(m) if is_uploaded_graph(m) else make_dp_compatible(m)).to(device).train() for m in models]
    params_stacked, buffers_stacked = stack_module_state(fixed)
    params = {k: v.detach().clone() for k, v in params_stacked.items()}
    # Buffers a DP-trainable model may hold are constants (an ONNX graph's shapes or masks): BatchNorm, the
    # one layer that updates buffers in training, was replaced or refused above. Each model's go to its call.
    buffers = {k: v.detach().clone() for k, v in buffers_stacked.items()}
    names = [n for n, _ in fixed[0].named_parameters()]
    base = copy.deepcopy(fixed[0]).to("meta").train()

    def sample_loss(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x.unsqueeze(0),)), y.unsqueeze(0))

    # randomness='different': dropout (if any) draws from the global generator, as it does under Opacus.
    inner = vmap(grad(sample_loss), in_dims=(None, None, 0, 0), randomness="different")
    per_sample_grads = vmap(inner, in_dims=(0, 0, 0, 0), randomness="different")

    sizes = [len(d) for d in datas]
    schedules = [poisson_schedule(n, config.batch_size) for n in sizes]
    rates = [q for q, _ in schedules]
    steps = [per_epoch for _, per_epoch in schedules]  # UniformWithReplacementSampler.steps
    expected = [int(n * q) for n, q in zip(sizes, rates)]
    if target_epsilon is not None:
        sigmas = [
            noise_for_epsilon(float(target_epsilon), float(delta), q, s * config.epochs, accountant)
            for q, s in zip(rates, steps)
        ]
    elif noise_multiplier is not None:
        sigmas = [float(noise_multiplier)] * K
    else:
        raise InvalidParameterError("dp_train_stacked needs 'noise_multiplier' or 'target_epsilon'; give one of them.")
    sampling = [make_generator(derive_seed(s, "dp", "sampling")) for s in seeds]
    noise = [make_generator(derive_seed(s, "dp", "noise"), device) for s in seeds]
    xs = [d.x.to(device) for d in datas]
    ys = [d.y.to(device) for d in datas]
    optimizer = StackedOptimizer({n: params[n] for n in names}, config, K)
    scale = torch.tensor([float(e) for e in expected], device=device)  # Opacus divides by int(n * q)
    stds = [sigma * max_grad_norm for sigma in sigmas]
    progress.start("dp_sgd", config.epochs, f"DP-SGD training of {K} models (stacked)")
    for epoch in range(config.epochs):
        for gen in sampling:
            # Opacus' loader is a torch DataLoader given this generator: starting an epoch's iterator draws
            # its worker base seed from it first (torch.utils.data.dataloader._BaseDataLoaderIter).
            torch.empty((), dtype=torch.int64).random_(generator=gen)
        for t in range(max(steps)):
            active = [t < s for s in steps]
            chosen = [
                (torch.rand(sizes[k], generator=sampling[k]) < rates[k]).nonzero().reshape(-1) if active[k] else None
                for k in range(K)
            ]
            width = max([len(c) for c in chosen if c is not None] + [1])
            idx = torch.zeros(K, width, dtype=torch.long)
            valid = torch.zeros(K, width)
            for k, c in enumerate(chosen):
                if c is not None and len(c):
                    idx[k, : len(c)] = c
                    valid[k, : len(c)] = 1.0
            xb = torch.stack([xs[k][idx[k].to(device)] for k in range(K)])
            yb = torch.stack([ys[k][idx[k].to(device)] for k in range(K)])
            grads = per_sample_grads(params, buffers, xb, yb)
            norms = torch.stack([grads[n].reshape(K, width, -1).norm(2, dim=-1) for n in names], dim=-1).norm(2, dim=-1)
            clip = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * valid.to(device)
            for n in names:
                summed = torch.einsum("ks,ks...->k...", clip, grads[n])
                drawn = torch.stack(
                    [
                        torch.normal(0.0, stds[k], size=params[n].shape[1:], device=device, generator=noise[k])
                        if stds[k] > 0 and active[k]
                        else torch.zeros(params[n].shape[1:], device=device)
                        for k in range(K)
                    ]
                )
                params[n].grad = (summed + drawn) / scale.view(K, *([1] * (summed.dim() - 1)))
            optimizer.step(None if all(active) else torch.tensor(active, device=device))
            optimizer.zero_grad()
        progress.advance("dp_sgd", epoch=epoch + 1)
    progress.finish("dp_sgd")
    out = []
    for k, model in enumerate(fixed):
        trained = {n: params[n][k].detach().clone() for n in names}
        model.load_state_dict({**trained, **{n: b[k] for n, b in buffers.items()}})
        history = _accountant_history(accountant, sigmas[k], rates[k], steps[k] * config.epochs)
        setattr(model, EPSILON_ATTRIBUTE, spent_epsilon(accountant, history, float(delta)))
        setattr(model, DELTA_ATTRIBUTE, float(delta))
        setattr(model, NOISE_ATTRIBUTE, sigmas[k])
        out.append(model.eval())
    return out


def dp_sgd_stacked_loop(
    *,
    noise_multiplier: float | None,
    max_grad_norm: float,
    delta: float,
    accountant: str = "rdp",
    target_epsilon: float | None = None,
    training: Mapping[str, Any] | None = None,
) -> Any:
    """The ``train_stacked`` of the ``dp_sgd`` loop stage: :func:`dp_train_stacked` with the stage's parameters.

    The recipe's config is updated by the stage's own ``training`` parameters (:func:`dp_stage_config`), as
    the one-by-one loop does, so a population of a DP-SGD row (LiRA shadows) trains like its target.
    """
    own = dict(training or {})

    def train_stacked(
        models: Sequence[nn.Module],
        datas: Sequence[TensorData],
        *,
        config: Any,
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
        progress: Progress | None = None,
    ) -> list[nn.Module]:
        return dp_train_stacked(
            models,
            datas,
            config=dp_stage_config(config, own),
            seeds=seeds,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            delta=delta,
            accountant=accountant,
            target_epsilon=target_epsilon,
            device=device,
            progress=progress,
        )

    return train_stacked
