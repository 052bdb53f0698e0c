"""Adversarial debiasing (FD1), upstream's layer-1 front door: :class:`AdversarialDebiasing`.

The training loop and its notes (why the adversary reads log-probabilities, takes several steps per classifier
step, and why the returned classifier is an average of its iterates) are in
:mod:`amulet.discriminatory_behavior.defenses._debiasing_loop`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, validate_params
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError, NotRunError
from amulet.progress import Progress
from amulet.utils import layer1_threads, loader_batches, seeded_init

from ._base import DiscriminatoryBehaviorDefense
from ._debiasing_loop import AdversaryModel, Batch, debiasing_loop, train_debiased

__all__ = ["AdversarialDebiasing", "AdversaryModel", "debiasing_loop", "train_debiased"]


def _lambdas_tensor(lambdas: Any, n_sensitive_attrs: int, owner: str) -> torch.Tensor:
    """Validate ``lambdas`` (a number, or one non-negative finite weight per attribute) as a float tensor."""
    if isinstance(lambdas, torch.Tensor) and lambdas.dim() == 0:
        values = [float(lambdas.item())] * n_sensitive_attrs
    elif isinstance(lambdas, torch.Tensor):
        values = lambdas.detach().cpu().reshape(-1).tolist()
    elif isinstance(lambdas, numbers.Real) and not isinstance(lambdas, bool):
        values = [float(lambdas)] * n_sensitive_attrs
    elif isinstance(lambdas, Sequence) and not isinstance(lambdas, str):
        values = list(lambdas)
    else:
        values = None
    ok = (
        values is not None
        and len(values) == n_sensitive_attrs
        and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)) and float(v) >= 0
            for v in values
        )
    )
    if not ok:
        raise InvalidParameterError(
            PARAM_MESSAGE.format(
                name="lambdas",
                owner=owner,
                expected=f"one finite non-negative weight per sensitive attribute ({n_sensitive_attrs} values)",
                value=lambdas,
            )
        )
    assert values is not None
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


class AdversarialDebiasing(DiscriminatoryBehaviorDefense):
    """Adversarial debiasing of a classifier (Louppe et al. 2017; Zhang et al. 2018).

    Args:
        model: The classifier to debias (any state: fresh or already trained).
        criterion: Task loss, e.g. ``nn.CrossEntropyLoss()``.
        optimizer: Optimizer over ``model``'s parameters.
        train_loader: Yields ``(x, y, z)`` batches; z has ``n_sensitive_attrs`` binary columns.
        test_loader: Yields ``(x, y, z)`` batches, used by :meth:`adversary_report`.
        n_sensitive_attrs: Number of sensitive attributes (columns of z).
        n_classes: Number of classifier outputs (the adversary's input size).
        lambdas: Fairness weight per sensitive attribute (tensor or sequence of ``n_sensitive_attrs``
            non-negative numbers; a single number applies to all). The classifier minimises
            ``task loss - mean_k lambdas[k] * adversary BCE_k``, as upstream (whose census example uses
            ``[40, 40]``). Larger = fairer, less accurate.
        device: Torch device.
        epochs: Passes of the classifier over ``train_loader``, one classifier step per batch, each after
            ``adversary_steps`` adversary steps.
        pretrain_adversary_epochs: Passes that train only the adversary before the alternation.
        adversary_lr: Adam learning rate of the adversary (keyword-only).
        adversary_steps: Adversary steps before every classifier step (keyword-only, default 10): the
            adversary must stay close to optimal or the classifier learns to fool it instead of hiding the
            attributes.
        average_decay: The debiased classifier is the moving average of its iterates with this decay
            (keyword-only, default 0.95; 0 = the last iterate), see the module notes.
        seed: Seed of the adversary's initialisation (keyword-only).
        progress: Progress reporter (keyword-only).

    Attributes:
        adversary_: The trained :class:`AdversaryModel` (also readable as ``discmodel``, upstream's name).
        n_adversary_steps_: Adversary optimizer steps taken (pretraining included).
        n_classifier_steps_: Classifier optimizer steps taken.

    Raises:
        InvalidParameterError: (a ``ValueError``) at construction, for a parameter outside its allowed values
            or ``lambdas`` of the wrong length (the message names the parameter and what it accepts).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(64, 4, generator=g); y = (x[:, 0] > 0).long(); z = (x[:, :2] > 0).long()
        >>> loader = DataLoader(TensorDataset(x, y, z), batch_size=16)
        >>> model = nn.Linear(4, 2)
        >>> defense = AdversarialDebiasing(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()),
        ...     loader, loader, 2, 2, [1.0, 1.0], "cpu", epochs=2, pretrain_adversary_epochs=1)
        >>> _ = defense.train_fair()
        >>> defense.n_classifier_steps_, defense.n_adversary_steps_
        (8, 84)
    """

    _parameter_constraints = {
        "model": [InstanceOf(nn.Module)],
        "criterion": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "test_loader": [InstanceOf(DataLoader), None],
        "n_sensitive_attrs": [Interval(int, 1, None)],
        "n_classes": [Interval(int, 2, None)],
        # one number for every attribute, or one per attribute (their count is checked against
        # n_sensitive_attrs by _lambdas_tensor, which the constraints cannot express)
        "lambdas": [
            Interval(float, 0, None),
            InstanceOf((torch.Tensor, list, tuple), label="a tensor or list of one weight per sensitive attribute"),
        ],
        "device": [InstanceOf((str, torch.device))],
        "epochs": [Interval(int, 0, None)],
        "pretrain_adversary_epochs": [Interval(int, 0, None)],
        "adversary_lr": [Interval(float, 0, 10, closed="right")],
        "adversary_steps": [Interval(int, 1, None)],
        "average_decay": [Interval(float, 0, 1, closed="left")],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        test_loader: DataLoader,
        n_sensitive_attrs: int,
        n_classes: int,
        lambdas: torch.Tensor | Sequence[float] | float,
        device: str | torch.device,
        epochs: int = 5,
        pretrain_adversary_epochs: int = 5,
        *,
        adversary_lr: float = 1e-3,
        adversary_steps: int = 10,
        average_decay: float = 0.95,
        seed: int = 0,
        progress: Progress | None = None,
    ):
        super().__init__(model, criterion, optimizer, train_loader, test_loader, device)
        self.n_sensitive_attrs = n_sensitive_attrs
        self.n_classes = n_classes
        self.lambdas = lambdas
        self.epochs = epochs
        self.pretrain_adversary_epochs = pretrain_adversary_epochs
        self.adversary_lr = adversary_lr
        self.adversary_steps = adversary_steps
        self.average_decay = average_decay
        self.seed = seed
        self.progress = progress
        validate_params(self)
        _lambdas_tensor(self.lambdas, self.n_sensitive_attrs, type(self).__name__)

    @property
    def discmodel(self) -> AdversaryModel:
        """Upstream's name for :attr:`adversary_`."""
        if not hasattr(self, "adversary_"):
            raise NotRunError("This AdversarialDebiasing has no adversary yet; call train_fair() first.")
        return self.adversary_

    def _batches(self) -> Iterator[Batch]:
        for batch in loader_batches(self.train_loader):
            if len(batch) < 3:
                raise InvalidParameterError(
                    f"The 'train_loader' parameter of {type(self).__name__} must yield (x, y, z) batches with the "
                    f"sensitive attributes z. Got batches of {len(batch)} tensors instead."
                )
            x, y, z = batch[0], batch[1], batch[2]
            z = z.reshape(len(x), -1)
            if z.shape[1] != self.n_sensitive_attrs:
                raise InvalidParameterError(
                    PARAM_MESSAGE.format(
                        name="n_sensitive_attrs",
                        owner=type(self).__name__,
                        expected=f"the number of columns of z in the training batches ({z.shape[1]})",
                        value=self.n_sensitive_attrs,
                    )
                )
            if not bool(((z == 0) | (z == 1)).all()):
                raise InvalidParameterError(
                    f"The 'train_loader' parameter of {type(self).__name__} must yield binary sensitive attributes "
                    f"(0/1). Got values {torch.unique(z)[:10].tolist()} instead."
                )
            yield x, y, z

    def train_fair(self) -> nn.Module:
        """Pretrain the adversary, then alternate ``adversary_steps`` adversary steps and one classifier step.

        Returns:
            The debiased model (the same object as ``model``), in eval mode.

        Raises:
            InvalidParameterError: for bad parameters, ``lambdas`` whose length is not ``n_sensitive_attrs``,
                or a loader that does not yield binary z with ``n_sensitive_attrs`` columns.
        """
        validate_params(self)
        lambdas = _lambdas_tensor(self.lambdas, self.n_sensitive_attrs, type(self).__name__)
        device = torch.device(self.device)
        self.model.to(device)
        adversary = seeded_init(lambda: AdversaryModel(self.n_sensitive_attrs, self.n_classes), self.seed).to(device)
        adversary_optimizer = torch.optim.Adam(adversary.parameters(), lr=self.adversary_lr)
        # small models on a busy machine train faster on fewer threads (layer1_threads decides)
        with layer1_threads(self.model):
            counts = train_debiased(
                self.model,
                adversary,
                self._batches,
                criterion=self.criterion,
                model_optimizer=self.optimizer,
                adversary_optimizer=adversary_optimizer,
                lambdas=lambdas.to(device),
                epochs=self.epochs,
                pretrain_adversary_epochs=self.pretrain_adversary_epochs,
                device=device,
                adversary_steps=self.adversary_steps,
                average_decay=self.average_decay,
                progress=self.progress,
            )
        self.adversary_ = adversary.eval()
        self.n_adversary_steps_ = counts["adversary_steps"]
        self.n_classifier_steps_ = counts["classifier_steps"]
        return self.model.eval()

    def adversary_report(self) -> tuple[float, ...]:
        """AUC of the trained adversary at recovering each sensitive attribute on ``test_loader``."""
        return tuple(DiscriminatoryBehavior.adversary_auc(self.discmodel, self.model, self.test_loader, self.device))
