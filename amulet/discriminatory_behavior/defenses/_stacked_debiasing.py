"""Adversarial debiasing of K models at once: the ``train_stacked`` of the ``adversarial_debiasing`` stage.

Populations trained with a debiased recipe (distribution-inference models, LiRA shadows, BadNets' retrained
model of a debiased row) used to train one model at a time, each with ``adversary_steps`` (10) adversary
steps per classifier step: the slowest populations of the census matrix. Here the K classifiers and their K
adversaries are stacked (:class:`amulet.utils._stacked_chain.StackedChain`: MLP classifiers, and the
adversary, which is an MLP) and every step runs for all models at once.

Equivalence with :func:`~amulet.discriminatory_behavior.defenses.debiasing_loop`
--------------------------------------------------------------------------------
Model ``k`` goes through exactly the steps ``debiasing_loop(model_k, datas[k], seed=seeds[k], ...)`` takes:

* the batches come from the same generator draws in the same order: the loop's ``torch.randperm`` calls
  on ``make_generator(seed)`` are replayed per model (:func:`_schedule`), including the adversary's stream
  of passes that runs alongside the classifier's and draws a new permutation whenever it runs out;
* the same phases: ordinary classifier training for ``min(pretrain_classifier_epochs, epochs - 1)``
  epochs, adversary pretraining, then per classifier batch ``adversary_steps`` adversary steps (on the
  classifier's eval-mode outputs) and one classifier step on ``task loss - mean_k lambda_k * BCE_k``;
* the same initial adversary (``seeded_init`` with ``derive_seed(seed, "adversary")``), Adam for the
  adversary, the recipe's optimizer for the classifier (one step count per model), the same moving average
  of the classifier's iterates, bias-corrected with each model's own step count.

The models never interact, so when one model runs out of batches before another it simply waits (its
optimizer does not step): the order of each model's own operations is what determines it. Stacked and
single-model kernels round differently (about 1e-7 per step), so models agree closely rather than bit for
bit (tested against the one-at-a-time loop). Classifiers that are not MLP chains are trained one at a time
by ``debiasing_loop``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import stack_module_state

from amulet.exceptions import NotApplicableError
from amulet.progress import Progress, resolve_progress
from amulet.utils import (
    StackedOptimizer,
    TensorData,
    TrainConfig,
    derive_seed,
    has_batchnorm,
    make_generator,
    seeded_init,
)
from amulet.utils._stacked_chain import StackedChain, chain_layers, cross_entropy_and_grad

from ._debiasing_loop import AdversaryModel, debiasing_loop

__all__ = ["debiasing_stacked_loop", "train_debiased_stacked"]


@dataclass
class _Schedule:
    """One model's batches, in the order ``debiasing_loop`` draws them (row indices into its own data)."""

    plain: list[list[torch.Tensor]] = field(default_factory=list)
    pretrain: list[list[torch.Tensor]] = field(default_factory=list)
    #: per epoch, per classifier batch: (classifier rows, [adversary rows] * adversary_steps)
    debias: list[list[tuple[torch.Tensor, list[torch.Tensor]]]] = field(default_factory=list)


def _schedule(
    n: int, batch_size: int, seed: int, skip_singletons: bool, n_plain: int, n_pretrain: int, n_debias: int, steps: int
) -> _Schedule:
    """Replay ``debiasing_loop``'s generator draws for one model (same calls, same order, indices only)."""
    gen = make_generator(seed)

    def batches() -> Iterator[torch.Tensor]:
        order = torch.randperm(n, generator=gen)  # drawn at the first next(), as in debiasing_loop
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and skip_singletons:
                continue  # BatchNorm cannot train on a batch of one; the loops skip it
            yield idx

    def stream() -> Iterator[torch.Tensor]:
        while True:
            yielded = False
            for idx in batches():
                yielded = True
                yield idx
            if not yielded:
                return

    out = _Schedule()
    out.plain = [list(batches()) for _ in range(n_plain)]
    out.pretrain = [list(batches()) for _ in range(n_pretrain)]
    adversary_batches = stream()
    for _ in range(n_debias):
        epoch: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        for idx in batches():
            epoch.append((idx, [next(adversary_batches) for _ in range(steps)]))
        out.debias.append(epoch)
    return out


def _groups(rows: Sequence[torch.Tensor | None]) -> list[tuple[list[int], torch.Tensor]]:
    """Models with a batch this tick, grouped by batch size: ``[(members, (m, B) global row indices)]``."""
    by_size: dict[int, list[int]] = {}
    for k, idx in enumerate(rows):
        if idx is not None:
            by_size.setdefault(len(idx), []).append(k)
    return [(members, torch.stack([rows[k] for k in members])) for members in by_size.values()]  # type: ignore[misc]


class _Stack:
    """K classifiers and their K adversaries as stacked chains, with their optimizers."""

    def __init__(
        self,
        models: list[nn.Module],
        adversaries: list[AdversaryModel],
        config: TrainConfig,
        adversary_lr: float,
        lambdas: torch.Tensor,
    ) -> None:
        layers = chain_layers(models[0])
        adversary_layers = chain_layers(adversaries[0].network)
        assert layers is not None and adversary_layers is not None
        params, buffers = stack_module_state(models)
        self.params = {n: v.detach().clone() for n, v in params.items()}
        self.buffers = {n: v.detach().clone() for n, v in buffers.items()}
        self.clf = StackedChain(layers, self.params, self.buffers)
        adv_params, adv_buffers = stack_module_state([a.network for a in adversaries])
        self.adv_params = {n: v.detach().clone() for n, v in adv_params.items()}
        self.adv = StackedChain(adversary_layers, self.adv_params, {n: v.clone() for n, v in adv_buffers.items()})
        K = len(models)
        self.clf_opt = StackedOptimizer(self.params, config, K)
        self.adv_opt = StackedOptimizer(
            self.adv_params, TrainConfig(optimizer="adam", lr=adversary_lr, weight_decay=0.0), K
        )
        self.lambdas = lambdas
        self.K = K

    def _step(
        self,
        optimizer: StackedOptimizer,
        like: dict[str, torch.Tensor],
        groups: list[tuple[list[int], torch.Tensor]],
        fn: Callable[[list[int], torch.Tensor, torch.Tensor | None], dict[str, torch.Tensor]],
    ) -> list[int]:
        """Run ``fn`` per group, gather its gradients into full-size tensors and step the active models."""
        device = next(iter(like.values())).device
        grads: dict[str, torch.Tensor] = {}
        active: list[int] = []
        for members, idx in groups:
            sel = None if len(members) == self.K else torch.as_tensor(members, device=device)
            group_grads = fn(members, idx, sel)
            active.extend(members)
            if sel is None:
                grads = group_grads
                continue
            for name, g in group_grads.items():
                if name not in grads:
                    grads[name] = torch.zeros_like(like[name])
                grads[name].index_add_(0, sel, g)
        if active:
            mask = torch.zeros(self.K, dtype=torch.bool, device=device)
            mask[active] = True
            optimizer.step(None if len(active) == self.K else mask, grads=grads)
        return active

    def plain_step(self, groups: list[tuple[list[int], torch.Tensor]], x: torch.Tensor, y: torch.Tensor) -> None:
        def fn(members: list[int], idx: torch.Tensor, sel: torch.Tensor | None) -> dict[str, torch.Tensor]:
            _, grads = self.clf.loss_and_grads(x[idx], y[idx], sel)
            return grads

        self._step(self.clf_opt, self.params, groups, fn)

    def adversary_step(self, groups: list[tuple[list[int], torch.Tensor]], x: torch.Tensor, z: torch.Tensor) -> None:
        def fn(members: list[int], idx: torch.Tensor, sel: torch.Tensor | None) -> dict[str, torch.Tensor]:
            # The classifier is read in eval mode: its outputs are what the fairness metrics will see.
            outputs = self.clf.forward_eval(x[idx], sel)
            scores, cache = self.adv.forward_train(torch.log_softmax(outputs, dim=-1), sel)
            zb = z[idx]
            # d mean_{b,a} BCE(s, z) / d s
            ds = (torch.sigmoid(scores) - zb) / (zb.shape[1] * zb.shape[2])
            grads, _ = self.adv.backward(cache, ds)
            return grads

        self._step(self.adv_opt, self.adv_params, groups, fn)

    def debias_step(
        self, groups: list[tuple[list[int], torch.Tensor]], x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> list[int]:
        def fn(members: list[int], idx: torch.Tensor, sel: torch.Tensor | None) -> dict[str, torch.Tensor]:
            logits, cache = self.clf.forward_train(x[idx], sel)
            _, dtask = cross_entropy_and_grad(logits, y[idx])
            log_probs = torch.log_softmax(logits, dim=-1)
            scores, adv_cache = self.adv.forward_train(log_probs, sel)
            zb = z[idx]
            # d mean_a(lambda_a * mean_b BCE_ba) / d s_ba
            dscores = (torch.sigmoid(scores) - zb) * (self.lambdas / (zb.shape[1] * zb.shape[2]))
            _, dlog_probs = self.adv.backward(adv_cache, dscores, input_grad=True)
            assert dlog_probs is not None
            dfair = dlog_probs - log_probs.exp() * dlog_probs.sum(-1, keepdim=True)  # through log-softmax
            grads, _ = self.clf.backward(cache, dtask - dfair)
            return grads

        return self._step(self.clf_opt, self.params, groups, fn)


def train_debiased_stacked(
    models: list[nn.Module],
    datas: Sequence[TensorData],
    *,
    config: TrainConfig,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    fairness_weight: float = 1.0,
    pretrain_classifier_epochs: int = 2,
    pretrain_adversary_epochs: int = 2,
    adversary_lr: float = 1e-3,
    adversary_steps: int = 10,
    average_decay: float = 0.95,
) -> list[nn.Module]:
    """Train the fresh ``models`` with adversarial debiasing, model ``k`` as ``debiasing_loop`` would.

    Args:
        models: Freshly initialised classifiers of one architecture.
        datas: Each model's training rows, with binary sensitive attributes ``z``.
        config: The recipe's training configuration (epochs, batch size, optimizer).
        seeds: Each model's seed.
        device: Torch device.
        progress: Progress reporter (task ``"debias"``).
        fairness_weight: Weight of the adversary's loss for every sensitive attribute (upstream's
            ``lambdas``, one value).
        pretrain_classifier_epochs, pretrain_adversary_epochs, adversary_lr, adversary_steps, average_decay:
            As :func:`~amulet.discriminatory_behavior.defenses.debiasing_loop`.

    Returns:
        The debiased models, in eval mode.

    Raises:
        NotApplicableError: when a model's data has no (binary) sensitive attributes.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    K = len(models)
    loop = functools.partial(
        debiasing_loop,
        config=config,
        device=device,
        fairness_weight=fairness_weight,
        pretrain_classifier_epochs=pretrain_classifier_epochs,
        pretrain_adversary_epochs=pretrain_adversary_epochs,
        adversary_lr=adversary_lr,
        adversary_steps=adversary_steps,
        average_decay=average_decay,
    )
    if K == 1 or chain_layers(models[0]) is None:
        return [loop(m, d, seed=int(s), progress=progress) for m, d, s in zip(models, datas, seeds)]
    for data in datas:
        if data.z is None or data.z.numel() == 0:
            raise NotApplicableError(
                "Adversarial debiasing needs the sensitive attributes (z) of the training data; this dataset has none."
            )
        if not bool(((data.z == 0) | (data.z == 1)).all()):
            raise NotApplicableError("Adversarial debiasing needs binary sensitive attributes (0/1).")
    # One pool of rows; model k's rows are offset by the sizes of the datasets before it.
    offsets = np.cumsum([0] + [len(d) for d in datas])
    x = torch.cat([d.x for d in datas]).to(device)
    y = torch.cat([d.y for d in datas]).to(device)
    z = torch.cat([d.z.reshape(len(d), -1) for d in datas]).float().to(device)  # type: ignore[union-attr]
    n_attrs = z.shape[1]
    for m in models:
        m.to(device).eval()
    with torch.no_grad():
        n_outputs = int(models[0](x[:2]).shape[1])
    adversaries = [
        seeded_init(lambda: AdversaryModel(n_attrs, n_outputs), derive_seed(int(s), "adversary")) for s in seeds
    ]
    lambdas = torch.full((n_attrs,), float(fairness_weight), device=device)
    stack = _Stack([m.to(device) for m in models], [a.to(device) for a in adversaries], config, adversary_lr, lambdas)

    n_plain = min(pretrain_classifier_epochs, config.epochs - 1)
    n_debias = config.epochs - n_plain
    skip = has_batchnorm(models[0])
    schedules = [
        _schedule(
            len(d), config.batch_size, int(s), skip, n_plain, pretrain_adversary_epochs, n_debias, adversary_steps
        )
        for d, s in zip(datas, seeds)
    ]

    def tick(per_model: list[list[torch.Tensor]], t: int) -> list[torch.Tensor | None]:
        return [rows[t] + int(offsets[k]) if t < len(rows) else None for k, rows in enumerate(per_model)]

    progress.start("debias", n_plain + pretrain_adversary_epochs + n_debias, f"debiasing {K} models (stacked)")
    for epoch in range(n_plain):
        epochs = [s.plain[epoch] for s in schedules]
        for t in range(max(len(e) for e in epochs)):
            stack.plain_step(_groups(tick(epochs, t)), x, y)
        progress.advance("debias")
    for epoch in range(pretrain_adversary_epochs):
        epochs = [s.pretrain[epoch] for s in schedules]
        for t in range(max(len(e) for e in epochs)):
            stack.adversary_step(_groups(tick(epochs, t)), x, z)
        progress.advance("debias")
    averages = {n: torch.zeros_like(v) for n, v in stack.params.items()}
    counts = torch.zeros(K, device=device)
    for epoch in range(n_debias):
        debias = [s.debias[epoch] for s in schedules]
        for t in range(max(len(e) for e in debias)):
            for j in range(adversary_steps):
                adversary_rows = [[e[t][1][j]] if t < len(e) else [] for e in debias]
                stack.adversary_step(_groups(tick(adversary_rows, 0)), x, z)
            active = stack.debias_step(_groups(tick([[b[0] for b in e] for e in debias], t)), x, y, z)
            with torch.no_grad():
                mask = torch.zeros(K, dtype=torch.bool, device=device)
                mask[active] = True
                counts += mask
                for n, avg in averages.items():
                    shape = (K,) + (1,) * (avg.dim() - 1)
                    updated = avg * average_decay + stack.params[n] * (1.0 - average_decay)
                    avg.copy_(torch.where(mask.view(shape), updated, avg))
        progress.advance("debias")
    progress.finish("debias")
    with torch.no_grad():
        if average_decay > 0:
            correction = 1.0 - average_decay**counts
            for n, avg in averages.items():
                shape = (K,) + (1,) * (avg.dim() - 1)
                stepped = (counts > 0).view(shape)
                stack.params[n].copy_(
                    torch.where(stepped, avg / correction.clamp_min(1e-12).view(shape), stack.params[n])
                )
        for i, model in enumerate(models):
            state = {n: v[i].clone() for n, v in stack.params.items()}
            state.update({n: v[i].clone() for n, v in stack.buffers.items()})
            model.load_state_dict(state)
            model.eval()
    return models


def debiasing_stacked_loop(
    *,
    fairness_weight: float = 1.0,
    pretrain_classifier_epochs: int = 2,
    pretrain_adversary_epochs: int = 2,
    adversary_lr: float = 1e-3,
    adversary_steps: int = 10,
    average_decay: float = 0.95,
) -> Callable[..., list[nn.Module]]:
    """The ``train_stacked`` of the ``adversarial_debiasing`` loop stage: :func:`train_debiased_stacked` bound
    to the stage's parameters (the same as ``debiasing_loop``'s)."""
    return functools.partial(
        train_debiased_stacked,
        fairness_weight=fairness_weight,
        pretrain_classifier_epochs=pretrain_classifier_epochs,
        pretrain_adversary_epochs=pretrain_adversary_epochs,
        adversary_lr=adversary_lr,
        adversary_steps=adversary_steps,
        average_decay=average_decay,
    )
