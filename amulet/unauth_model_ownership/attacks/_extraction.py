"""Model extraction through prediction queries (Tramer et al., USENIX Security 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from amulet._validation import InstanceOf, Interval, Options, validate_params
from amulet.progress import Progress, resolve_progress
from amulet.unauth_model_ownership.attacks._base import UnauthModelOwnershipAttack
from amulet.utils import TrainingStep, flat_adam, layer1_threads, loader_batches, make_generator, predict_logits

__all__ = ["ModelExtraction"]

LOSS_TYPES = ("mse", "kl", "ce")


def _extraction_loss(loss_type: str, stolen_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    if loss_type == "mse":
        return F.mse_loss(stolen_logits, target_logits)
    if loss_type == "kl":
        return F.kl_div(
            F.log_softmax(stolen_logits, dim=1),
            F.log_softmax(target_logits, dim=1),
            reduction="batchmean",
            log_target=True,
        )
    return F.cross_entropy(stolen_logits, target_logits.argmax(1))


class ModelExtraction(UnauthModelOwnershipAttack):
    """Train a surrogate on the target's answers to the adversary's queries.

    The adversary's inputs (``train_loader``, up to ``query_budget`` of them, in loader order) are sent to
    the target once each; the surrogate ``attack_model`` is then trained for ``epochs`` to reproduce the
    answers with the chosen loss:

    * ``"mse"``: mean squared error between the logits (the target exposes logits);
    * ``"kl"``: KL divergence from the target's softmax to the surrogate's (probabilities exposed);
    * ``"ce"``: cross-entropy on the target's predicted label (labels only).

    Reference:
        Stealing Machine Learning Models via Prediction APIs. Florian Tramer, Fan Zhang, Ari Juels,
        Michael K. Reiter, Thomas Ristenpart. USENIX Security 2016.

    Args:
        target_model: The model to steal (queried in eval mode, never modified).
        attack_model: The surrogate to train (moved to ``device``).
        optimizer: Optimizer over ``attack_model``'s parameters.
        train_loader: The adversary's query data: (x, ...) batches; labels, if any, are ignored.
        device: Torch device.
        epochs: Passes over the answered queries (default 50).
        loss_type: ``"mse"``, ``"kl"`` or ``"ce"`` (default ``"mse"``; case-insensitive).
        query_budget: Maximum number of queries (inputs) sent to the target; None for all of ``train_loader``.
        seed: Seed of the order of training batches (default 0).
        progress: Progress reporter (task ``"extraction"``, one unit per epoch).

    Attributes:
        n_queries_: Number of inputs sent to the target.
        losses_: Mean loss of every epoch.

    Raises:
        ValueError: (an :class:`~amulet.exceptions.InvalidParameterError`) at construction for an unknown
            ``loss_type`` or any other parameter outside its allowed values (the message names it and them).
    """

    _parameter_constraints = {
        "target_model": [InstanceOf(nn.Module)],
        "attack_model": [InstanceOf(nn.Module)],
        "optimizer": [InstanceOf(torch.optim.Optimizer)],
        "train_loader": [InstanceOf(DataLoader)],
        "device": [InstanceOf((str, torch.device))],
        "epochs": [Interval(int, 0, None)],
        "loss_type": [Options(set(LOSS_TYPES))],
        "query_budget": [Interval(int, 1, None), None],
        "seed": [Interval(int, 0, None)],
        "progress": [InstanceOf(Progress), None],
    }

    def __init__(
        self,
        target_model: nn.Module,
        attack_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        device: str | torch.device,
        epochs: int = 50,
        loss_type: str = "mse",
        *,
        query_budget: int | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.target_model = target_model
        self.attack_model = attack_model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.device = device
        self.epochs = epochs
        # Case-insensitive, as upstream ("MSE" works there).
        self.loss_type = loss_type.lower() if isinstance(loss_type, str) else loss_type
        self.query_budget = query_budget
        self.seed = seed
        self.progress = progress
        validate_params(self)

    def _queries(self) -> torch.Tensor:
        xs, n = [], 0
        for batch in loader_batches(self.train_loader):
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if self.query_budget is not None:
                x = x[: self.query_budget - n]
            xs.append(x.float())
            n += len(x)
            if self.query_budget is not None and n >= self.query_budget:
                break
        return torch.cat(xs) if xs else torch.empty(0)

    def attack(self) -> nn.Module:
        """Query the target and train the surrogate.

        Returns:
            The trained surrogate, in eval mode.
        """
        validate_params(self)
        with layer1_threads(self.attack_model):
            return self._attack()

    def _attack(self) -> nn.Module:
        device = torch.device(self.device)
        progress = resolve_progress(self.progress)
        x = self._queries()
        batch_size = self.train_loader.batch_size or 256
        target_was_training = self.target_model.training
        answers = predict_logits(self.target_model, x, batch_size=max(batch_size, 256), device=device)
        self.target_model.train(target_was_training)
        self.n_queries_ = len(x)

        model = self.attack_model.to(device)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        x_dev, a_dev = x.to(device), answers.to(device)
        # _extraction_loss's MSE and cross-entropy as loss modules with their targets (the KL loss has none)
        criterion: nn.Module | None = {"mse": nn.MSELoss(), "ce": nn.CrossEntropyLoss()}.get(self.loss_type)
        targets = a_dev.argmax(1) if self.loss_type == "ce" else a_dev
        generator = make_generator(self.seed)
        self.losses_: list[float] = []
        progress.start("extraction", self.epochs, "model extraction")
        for epoch in range(self.epochs):
            model.train()
            order = torch.randperm(len(x), generator=generator).to(device)
            total = 0.0
            with flat_adam(self.optimizer) as steps:
                step = TrainingStep(model, criterion, steps) if criterion is not None else None
                for start in range(0, len(x), batch_size):
                    idx = order[start : start + batch_size]
                    if len(idx) < 2 and has_bn:
                        continue
                    steps.zero_grad()
                    if step is not None:  # the same loss and backward, written out for an MLP chain
                        loss = step(x_dev[idx], targets[idx])
                    else:
                        loss = _extraction_loss(self.loss_type, model(x_dev[idx]), a_dev[idx])
                        loss.backward()
                    steps.step()
                    total += loss.item() * len(idx)
            self.losses_.append(total / max(len(x), 1))
            progress.advance("extraction", loss=round(self.losses_[-1], 5), epoch=epoch + 1)
        progress.finish("extraction")
        return model.eval()
