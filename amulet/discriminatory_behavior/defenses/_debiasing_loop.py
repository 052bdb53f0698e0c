"""The adversarial-debiasing training loops (FD1): Louppe et al. 2017 "Learning to Pivot" / Zhang et al. 2018.

:func:`train_debiased` is the min-max loop shared by the layer-1 front door
(:class:`~amulet.discriminatory_behavior.defenses.AdversarialDebiasing`) and the recipe stage
(:func:`debiasing_loop`); :mod:`._stacked_debiasing` trains K models at once the way :func:`debiasing_loop`
trains one.

An adversary network tries to predict every sensitive attribute from the classifier's output. The classifier is
trained on ``task loss - mean_k lambda_k * adversary loss_k`` (upstream Amulet's objective and scale: the weighted
binary cross-entropies are averaged over the attributes): it is rewarded for outputs from which the sensitive
attributes cannot be recovered, which drives the demographic parity gap down.

Two choices keep this min-max game from running away, which it does with large weights such as upstream's
example ``lambdas=[40, 40]`` if the adversary gets one step per classifier step on raw logits (census accuracy
then falls below the majority rate while the gap grows):

* The adversary reads the classifier's log-probabilities (log-softmax), not its raw logits. Adding the same
  constant to every logit changes no prediction and no task loss, so on raw logits the classifier can encode
  the attributes *inversely* in that free direction and make the adversary confidently wrong: an unbounded
  reward for ``- adversary loss`` that has nothing to do with fairness.
* The adversary stays (near) optimal, as the pivot objective assumes: it takes ``adversary_steps`` steps (default
  10) for every classifier step. Upstream 0.6 alternates one adversary step and one classifier step on the same
  batch, so its adversary lags the classifier it is meant to bound; ten steps cost about 1.3-1.5 times upstream's
  training time on census (docs/benchmarks.md, layer 1).
* The returned classifier is the average of its iterates (a bias-corrected exponential moving average of its
  parameters, decay ``average_decay``), not the last one. Alternating gradient steps in a min-max game cycle
  around the equilibrium rather than settle on it; the last iterate is wherever the cycle stopped (on census
  with ``[40, 40]``, sometimes a constant predictor), the average sits near its centre (Yazici et al., "The
  Unusual Effectiveness of Averaging in GAN Training", ICLR 2019).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from amulet.discriminatory_behavior.defenses._adversary_gradients import adversary_gradients, hand_written
from amulet.exceptions import NotApplicableError
from amulet.progress import Progress, resolve_progress
from amulet.utils import (
    BatchTransform,
    TensorData,
    TrainConfig,
    derive_seed,
    flat_adam,
    has_batchnorm,
    make_generator,
    make_optimizer,
    run_epoch,
    seeded_init,
    transform_generator,
)

__all__ = ["AdversaryModel", "Batch", "debiasing_loop", "train_debiased"]

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class AdversaryModel(nn.Module):
    """The adversary: an MLP from the classifier's ``n_input`` outputs to one score per sensitive attribute.

    The classifier's outputs are turned into log-probabilities (log-softmax over the ``n_input`` columns) before
    the MLP, so the adversary sees exactly what decides the classifier's predictions: logits shifted by a common
    constant give the same scores. ``forward`` returns probabilities (sigmoid), as upstream; :meth:`logits` the
    pre-sigmoid scores.

    Args:
        n_sensitive: Number of sensitive attributes (outputs).
        n_input: Number of classifier outputs (inputs).
        hidden: Width of the three hidden layers.
    """

    def __init__(self, n_sensitive: int = 2, n_input: int = 2, hidden: int = 32):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(n_input, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_sensitive),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores from the classifier's outputs ``x`` (logits), shape (n, n_sensitive)."""
        return self.network(torch.log_softmax(x, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities that each sensitive attribute is 1, shape (n, n_sensitive)."""
        return torch.sigmoid(self.logits(x))


def _adversary_losses(adversary: AdversaryModel, outputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy per sensitive attribute, shape (n_sensitive,)."""
    return F.binary_cross_entropy_with_logits(adversary.logits(outputs), z, reduction="none").mean(0)


def train_debiased(
    model: nn.Module,
    adversary: AdversaryModel,
    batches: Callable[[], Iterable[Batch]],
    *,
    criterion: nn.Module,
    model_optimizer: torch.optim.Optimizer,
    adversary_optimizer: torch.optim.Optimizer,
    lambdas: torch.Tensor,
    epochs: int,
    pretrain_adversary_epochs: int,
    device: torch.device | str,
    adversary_steps: int = 10,
    average_decay: float = 0.95,
    batch_transform: BatchTransform | None = None,
    transform_generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """The debiasing loop shared by :class:`AdversarialDebiasing` and the registered recipe stage.

    First ``pretrain_adversary_epochs`` passes train only the adversary on the (frozen) classifier's outputs.
    Then, for ``epochs`` passes and on every batch: ``adversary_steps`` adversary steps on the classifier's current
    outputs (on the next batches of a stream of passes that runs alongside), then one classifier step on
    ``criterion(out, y) - mean_k lambdas[k] * BCE_k(adversary(out), z_k)``. ``batch_transform`` (e.g.
    adversarial examples) is applied to the classifier's batches; the adversary learns on clean inputs, where
    the fairness metrics are measured.

    Args:
        model: The classifier (trained in place).
        adversary: The adversary (trained in place).
        batches: Called once per pass; returns an iterable of ``(x, y, z)`` batches.
        criterion: Task loss.
        model_optimizer: Optimizer over ``model``'s parameters.
        adversary_optimizer: Optimizer over ``adversary``'s parameters.
        lambdas: Non-negative weight per sensitive attribute, shape (n_sensitive,), on ``device``.
        epochs: Passes of the classifier over the data with alternating updates.
        pretrain_adversary_epochs: Passes that train only the adversary first.
        device: Torch device.
        adversary_steps: Adversary steps before every classifier step (>= 1).
        average_decay: Decay of the moving average of the classifier's parameters over its debiasing steps,
            copied into ``model`` at the end (bias-corrected, so a few steps give their plain mean); 0 keeps
            the last iterate. Buffers (BatchNorm statistics) are the last iterate's.
        batch_transform: Optional per-batch transform ``(model, x, y, generator) -> (x, y)``.
        transform_generator: Generator handed to ``batch_transform``.
        progress: Progress reporter (tasks ``"debias/pretrain_adversary"`` and ``"debias"``).

    Returns:
        Counts of optimizer steps: ``{"adversary_steps", "classifier_steps"}``.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    skip_singletons = has_batchnorm(model)
    if batch_transform is not None and transform_generator is None:
        transform_generator = make_generator(0, device if device.type == "cuda" else "cpu")
    counts = {"adversary_steps": 0, "classifier_steps": 0}
    # The adversary's gradients written out (the same numbers): autograd's bookkeeping is most of its small steps
    by_hand = hand_written(adversary)

    def prepared(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> Batch | None:
        if len(x) < 2 and skip_singletons:
            return None  # BatchNorm cannot train on a batch of one
        x, y = x.to(device), y.to(device).long().reshape(-1)
        return x, y, z.to(device).float().reshape(len(x), -1)

    # Switching a module tree's mode walks every submodule in Python, and the loop alternates the modes about
    # eleven times per classifier step: a switch is only made when some flag differs from the wanted mode
    model_modules, adversary_modules = list(model.modules()), list(adversary.modules())

    def set_mode(root: nn.Module, modules: list[nn.Module], training: bool) -> None:
        if any(m.training is not training for m in modules):
            root.train(training)

    def classifier_outputs(x: torch.Tensor) -> torch.Tensor:
        # The classifier is read in eval mode: its outputs are what the fairness metrics will see.
        set_mode(model, model_modules, False)
        with torch.no_grad():
            return model(x)

    def adversary_step(x: torch.Tensor, z: torch.Tensor) -> float:
        return adversary_step_on(classifier_outputs(x), z)

    def adversary_step_on(outputs: torch.Tensor, z: torch.Tensor, *, report: bool = True) -> float:
        """One adversary step; returns its loss, or NaN without ``report`` (the loss is then not computed)."""
        set_mode(adversary, adversary_modules, True)
        adversary_steps_.zero_grad()
        loss: torch.Tensor | None
        if by_hand:
            loss, grads = adversary_gradients(adversary, outputs, z, with_loss=report)
            adversary_steps_.add_grads(grads)
        else:
            loss = _adversary_losses(adversary, outputs, z).mean()
            loss.backward()
        adversary_steps_.step()
        counts["adversary_steps"] += 1
        return float(loss.item()) if report and loss is not None else float("nan")

    def adversary_stream() -> Iterator[Batch]:
        while True:
            yielded = False
            for x, y, z in batches():
                batch = prepared(x, y, z)
                if batch is not None:
                    yielded = True
                    yield batch
            if not yielded:
                return

    # Adam steps over flat buffers (same numbers): the adversary is tiny, so its ten steps per batch are mostly
    # the optimizer's per-tensor overhead
    with flat_adam(model_optimizer) as model_steps, flat_adam(adversary_optimizer) as adversary_steps_:
        progress.start("debias/pretrain_adversary", pretrain_adversary_epochs, "pretraining the adversary")
        for epoch in range(pretrain_adversary_epochs):
            loss = float("nan")
            for x, y, z in batches():
                batch = prepared(x, y, z)
                if batch is not None:
                    loss = adversary_step(batch[0], batch[2])
            progress.advance("debias/pretrain_adversary", adversary_loss=round(loss, 5), epoch=epoch + 1)
        progress.finish("debias/pretrain_adversary")

        stream = adversary_stream()
        params = [p for p in model.parameters() if p.requires_grad]
        averages = [torch.zeros_like(p) for p in params]
        progress.start("debias", epochs, "adversarial debiasing")
        for epoch in range(epochs):
            task_total, adv_total, seen = 0.0, 0.0, 0
            for x, y, z in batches():
                batch = prepared(x, y, z)
                if batch is None:
                    continue
                adv_loss = float("nan")
                # The classifier does not change during these steps and its eval-mode outputs are row by row, so
                # one forward pass over all their batches gives each step the outputs it would compute itself
                steps = [next(stream) for _ in range(adversary_steps)]
                outputs_all = classifier_outputs(torch.cat([xa for xa, _, _ in steps]))
                # only the last step's loss is reported
                for i, ((_, _, za), outputs_a) in enumerate(zip(steps, outputs_all.split([len(s[0]) for s in steps]))):
                    adv_loss = adversary_step_on(outputs_a, za, report=i == len(steps) - 1)
                x, y, z = batch
                if batch_transform is not None:
                    assert transform_generator is not None
                    x, y = batch_transform(model, x, y, transform_generator)
                set_mode(model, model_modules, True)
                set_mode(adversary, adversary_modules, False)
                outputs = model(x)
                task_loss = criterion(outputs, y)
                fairness = (lambdas * _adversary_losses(adversary, outputs, z)).mean()
                model_steps.zero_grad()
                (task_loss - fairness).backward()
                model_steps.step()
                counts["classifier_steps"] += 1
                with torch.no_grad():
                    for avg, p in zip(averages, params):
                        avg.mul_(average_decay).add_(p.detach(), alpha=1.0 - average_decay)
                task_total += float(task_loss.item()) * len(x)
                adv_total += adv_loss * len(x)
                seen += len(x)
            progress.advance(
                "debias",
                task_loss=round(task_total / max(seen, 1), 5),
                adversary_loss=round(adv_total / max(seen, 1), 5),
                epoch=epoch + 1,
            )
            logger.debug(
                "debias epoch %d task %.5f adversary %.5f",
                epoch + 1,
                task_total / max(seen, 1),
                adv_total / max(seen, 1),
            )
    progress.finish("debias")
    if counts["classifier_steps"] > 0 and average_decay > 0:
        correction = 1.0 - average_decay ** counts["classifier_steps"]
        with torch.no_grad():
            for avg, p in zip(averages, params):
                p.copy_(avg / correction)
    adversary.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    return counts


def debiasing_loop(
    model: nn.Module,
    data: TensorData,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | str,
    batch_transform: BatchTransform | None = None,
    progress: Progress | None = None,
    fairness_weight: float = 1.0,
    pretrain_classifier_epochs: int = 2,
    pretrain_adversary_epochs: int = 2,
    adversary_lr: float = 1e-3,
    adversary_steps: int = 10,
    average_decay: float = 0.95,
) -> nn.Module:
    """Training loop of the ``adversarial_debiasing`` recipe stage.

    The classifier sees ``config.epochs`` passes in all: the first ``min(pretrain_classifier_epochs,
    config.epochs - 1)`` are ordinary training (so the adversary faces meaningful outputs), then the adversary is
    pretrained for ``pretrain_adversary_epochs`` passes, then the remaining passes alternate ``adversary_steps``
    adversary steps and one classifier step per batch, with weight ``fairness_weight`` for every sensitive
    attribute (see :func:`train_debiased`). Batch order follows
    ``seed`` exactly as in :func:`amulet.utils.train_model`, and ``batch_transform`` is applied to every batch.

    Raises:
        NotApplicableError: when ``data`` has no sensitive attributes or they are not binary.
    """
    progress = resolve_progress(progress)
    device = torch.device(device)
    if data.z is None or data.z.numel() == 0:
        raise NotApplicableError(
            "Adversarial debiasing needs the sensitive attributes (z) of the training data; this dataset has none."
        )
    if not bool(((data.z == 0) | (data.z == 1)).all()):
        raise NotApplicableError("Adversarial debiasing needs binary sensitive attributes (0/1).")
    model.to(device)
    x_all, y_all = data.x.to(device), data.y.to(device)
    z_all = data.z.reshape(len(data), -1).float().to(device)
    n, n_attrs = len(data), z_all.shape[1]
    model.eval()
    with torch.no_grad():
        n_outputs = int(model(x_all[:2]).shape[1])
    optimizer = make_optimizer(model, config)
    criterion = nn.CrossEntropyLoss()
    shuffle_gen = make_generator(seed)
    transform_gen = transform_generator(seed, device)

    def batches() -> Iterator[Batch]:
        order = torch.randperm(n, generator=shuffle_gen).to(device)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            yield x_all[idx], y_all[idx], z_all[idx]

    n_plain = min(pretrain_classifier_epochs, config.epochs - 1)
    progress.start("train", n_plain, "pretraining the classifier")
    for epoch in range(n_plain):
        total = run_epoch(
            model,
            batches(),
            optimizer=optimizer,
            criterion=criterion,
            batch_transform=batch_transform,
            transform_generator=transform_gen,
        )
        progress.advance("train", loss=round(total / max(n, 1), 5), epoch=epoch + 1)
    progress.finish("train")

    adversary = seeded_init(lambda: AdversaryModel(n_attrs, n_outputs), derive_seed(seed, "adversary")).to(device)
    train_debiased(
        model,
        adversary,
        batches,
        criterion=criterion,
        model_optimizer=optimizer,
        adversary_optimizer=torch.optim.Adam(adversary.parameters(), lr=adversary_lr),
        lambdas=torch.full((n_attrs,), float(fairness_weight), device=device),
        epochs=config.epochs - n_plain,
        pretrain_adversary_epochs=pretrain_adversary_epochs,
        device=device,
        adversary_steps=adversary_steps,
        average_decay=average_decay,
        batch_transform=batch_transform,
        transform_generator=transform_gen,
        progress=progress,
    )
    return model.eval()
