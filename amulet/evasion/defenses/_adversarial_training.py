"""PGD adversarial training (Madry et al., ICLR 2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, validate_params
from amulet.evasion.attacks._pgd import (
    LABEL_SOURCES,
    _check_clip_range,
    pgd_linf,
    pgd_linf_stacked,
    predicted_labels,
)
from amulet.evasion.defenses._base import EvasionDefense
from amulet.progress import Progress, resolve_progress
from amulet.utils import (
    BatchTransform,
    FlatAdam,
    StackedBatchTransform,
    TrainingStep,
    flat_adam,
    layer1_threads,
    loader_batches,
    make_generator,
)

__all__ = ["AdversarialTrainingPGD", "pgd_batch_transform", "pgd_stacked_batch_transform"]


def pgd_batch_transform(
    *,
    epsilon: float,
    step_size: float,
    iterations: int,
    clip_min: float | None = None,
    clip_max: float | None = None,
    mix_clean: float = 0.0,
    label_source: str = "true",
) -> BatchTransform:
    """A training-batch transform that replaces inputs by PGD examples against the current model.

    The examples are made with the model in eval mode, raising the loss of the batch's true labels (default)
    or of the model's own predictions (``label_source="predicted"``, upstream's choice); a seeded
    ``round(mix_clean * n)`` rows of each batch stay clean. The returned labels are the batch's true labels.

    Args:
        epsilon: L-inf radius.
        step_size: PGD step size.
        iterations: PGD steps.
        clip_min: Lowest valid input value (None: unbounded).
        clip_max: Highest valid input value (None: unbounded).
        mix_clean: Fraction of every batch left clean, in [0, 1].
        label_source: ``"true"`` (default) or ``"predicted"``: the labels whose loss PGD raises.

    Returns:
        ``transform(model, x, y, generator) -> (x', y)`` for :func:`amulet.utils.train_model` and recipes.

    Raises:
        ValueError: an unknown ``label_source``.
    """
    _check_label_source(label_source)

    def transform(
        model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = predicted_labels(model, x) if label_source == "predicted" else y
        x_adv = pgd_linf(
            model,
            x,
            target,
            epsilon=epsilon,
            step_size=step_size,
            iterations=iterations,
            clip_min=clip_min,
            clip_max=clip_max,
            generator=generator,
        )
        return _keep_clean(x_adv, x, mix_clean, generator), y

    return transform


def pgd_stacked_batch_transform(
    *,
    epsilon: float,
    step_size: float,
    iterations: int,
    clip_min: float | None = None,
    clip_max: float | None = None,
    mix_clean: float = 0.0,
    label_source: str = "true",
) -> StackedBatchTransform:
    """:func:`pgd_batch_transform` for a stacked ensemble of K models (batched population training).

    Model ``k``'s batch becomes exactly what :func:`pgd_batch_transform` makes of it with model ``k`` and
    ``generators[k]`` (same random start, same clean rows), so a population of adversarially trained models
    can be trained as one ensemble.

    Returns:
        ``transform(forward, x, y, generators) -> (x', y)`` with ``x`` of shape (K, n, ...) and ``forward``
        the models' eval-mode logits.

    Raises:
        ValueError: an unknown ``label_source``.
    """
    _check_label_source(label_source)

    def transform(
        forward: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        generators: Sequence[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if label_source == "predicted":
            with torch.no_grad():
                target = forward(x.detach()).argmax(-1)
        else:
            target = y
        x_adv = pgd_linf_stacked(
            forward,
            x,
            target,
            epsilon=epsilon,
            step_size=step_size,
            iterations=iterations,
            clip_min=clip_min,
            clip_max=clip_max,
            generators=generators,
        )
        return torch.stack([_keep_clean(x_adv[k], x[k], mix_clean, g) for k, g in enumerate(generators)]), y

    return transform


def _check_label_source(label_source: str) -> None:
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {list(LABEL_SOURCES)}; got {label_source!r}.")


def _keep_clean(x_adv: torch.Tensor, x: torch.Tensor, mix_clean: float, generator: torch.Generator) -> torch.Tensor:
    """``x_adv`` with a seeded ``round(mix_clean * n)`` of its rows put back to the clean ``x``."""
    n_clean = round(mix_clean * len(x))
    if n_clean > 0:
        keep = torch.randperm(len(x), generator=generator, device=generator.device)[:n_clean].to(x.device)
        x_adv[keep] = x.detach()[keep]
    return x_adv


class AdversarialTrainingPGD(EvasionDefense):
    """Adversarial training on L-inf PGD examples of every batch.

    By default, as upstream Amulet, every batch gives two updates: a step on the clean batch, then a step on
    PGD examples made against the model just updated, raising the loss of its own predictions
    (``label_source="predicted"``, cleverhans' ``y=None``); both steps train on the true labels.
    ``clean_step=False`` takes only the adversarial step (Madry et al.'s formulation, with ``mix_clean`` rows
    of each batch left clean), and ``label_source="true"`` makes the examples against the true labels, as the
    assessment engine's adversarial-training stage does. The examples are generated with the model in eval
    mode (random start, clipped to [clip_min, clip_max]); the updates are taken in train mode.

    Reference:
        Towards Deep Learning Models Resistant to Adversarial Attacks. Madry et al., ICLR 2018.
        https://arxiv.org/abs/1706.06083

    Args:
        model: Model to train (moved to ``device``).
        criterion: Training loss (e.g. ``nn.CrossEntropyLoss()``).
        optimizer: Optimizer over ``model``'s parameters.
        train_loader: Loader of (x, y) or (x, y, z) training batches.
        device: Torch device.
        epochs: Passes over ``train_loader`` (default 5).
        epsilon: L-inf radius of the training examples (default 0.1).
        iterations: PGD steps per batch (default 40).
        step_size: PGD step size (default 0.01).
        clip_min: Lowest valid input value (default 0.0; None for unbounded features).
        clip_max: Highest valid input value (default 1.0; None for unbounded features).
        mix_clean: Fraction of each adversarial batch left clean (default 0.0: all adversarial).
        seed: Seed of the PGD random starts (default 0).
        progress: Progress reporter (task ``"adversarial_training"``, one unit per epoch).
        clean_step: Take a step on the clean batch before the adversarial step (default True, upstream's).
        label_source: ``"predicted"`` (default, upstream's) or ``"true"``: the labels whose loss PGD raises.

    Attributes:
        losses_: Mean training loss of every epoch (over all its steps, clean and adversarial), after
            :meth:`train_robust`.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            (the message names it and them).
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "criterion": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "epochs": [Interval(int, 0, None)],
        "epsilon": [Interval(float, 0, None)],
        "iterations": [Interval(int, 0, None)],
        "step_size": [Interval(float, 0, None)],
        "clip_min": [Interval(float, None, None), None],
        "clip_max": [Interval(float, None, None), None],
        "mix_clean": [Interval(float, 0, 1)],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
        "clean_step": [InstanceOf(bool)],
        "label_source": [Options(set(LABEL_SOURCES))],
    }

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        device: str | torch.device,
        epochs: int = 5,
        epsilon: float = 0.1,
        iterations: int = 40,
        step_size: float = 0.01,
        clip_min: float | None = 0.0,
        clip_max: float | None = 1.0,
        *,
        mix_clean: float = 0.0,
        seed: int = 0,
        progress: Progress | None = None,
        clean_step: bool = True,
        label_source: str = "predicted",
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.epochs = epochs
        self.epsilon = epsilon
        self.iterations = iterations
        self.step_size = step_size
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.mix_clean = mix_clean
        self.seed = seed
        self.progress = progress
        self.clean_step = clean_step
        self.label_source = label_source
        validate_params(self)
        _check_clip_range(type(self).__name__, self.clip_min, self.clip_max)

    def train_robust(self) -> nn.Module:
        """Run adversarial training.

        Returns:
            The trained model, in eval mode.
        """
        validate_params(self)
        _check_clip_range(type(self).__name__, self.clip_min, self.clip_max)
        with layer1_threads(self.model):
            return self._train()

    def _train(self) -> nn.Module:
        device = torch.device(self.device)
        progress = resolve_progress(self.progress)
        generator = make_generator(self.seed, device if device.type == "cuda" else "cpu")
        transform = pgd_batch_transform(
            epsilon=float(self.epsilon),
            step_size=float(self.step_size),
            iterations=int(self.iterations),
            clip_min=self.clip_min,
            clip_max=self.clip_max,
            mix_clean=float(self.mix_clean),
            label_source=self.label_source,
        )
        model = self.model.to(device)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        self.losses_: list[float] = []
        progress.start("adversarial_training", self.epochs, "adversarial training")
        with flat_adam(self.optimizer) as steps:
            step = TrainingStep(model, self.criterion, steps)
            for epoch in range(self.epochs):
                total, count = 0.0, 0
                for batch in loader_batches(self.train_loader):
                    x, y = batch[0].to(device).float(), batch[1].to(device).long()
                    if len(x) < 2 and has_bn:
                        continue  # BatchNorm cannot train on a batch of one
                    if self.clean_step:
                        total += self._step(model, steps, step, x, y)
                        count += len(x)
                    # The examples are made against the model as the clean step left it (upstream's order).
                    x_adv, y = transform(model, x, y, generator)
                    total += self._step(model, steps, step, x_adv, y)
                    count += len(x)
                self.losses_.append(total / max(count, 1))
                progress.advance("adversarial_training", loss=round(self.losses_[-1], 5), epoch=epoch + 1)
        progress.finish("adversarial_training")
        return model.eval()

    @staticmethod
    def _step(model: nn.Module, steps: FlatAdam, step: TrainingStep, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on (x, y) in train mode; returns the batch's summed loss."""
        model.train()
        steps.zero_grad()
        loss = step(x, y)
        steps.step()
        return loss.item() * len(x)
