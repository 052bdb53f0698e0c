"""Base class of membership inference attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

__all__ = ["MembershipInferenceAttack"]


class MembershipInferenceAttack(ABC):
    """An attack that scores, for each candidate record, how likely it was in the model's training data.

    Subclasses implement :meth:`attack`, which returns membership scores (higher = more likely a member)
    together with the true membership of each candidate; score them with
    :func:`amulet.membership_inference.metrics.compute_mi_metrics`.
    """

    @abstractmethod
    def attack(self) -> dict[str, Any]:
        """Run the attack and return membership scores and true labels."""

    def train_shadow_model(self, shadow_model: nn.Module, train_loader: DataLoader) -> nn.Module:
        """Train one shadow model as upstream Amulet's public helper does, and return it.

        Upstream's schedule: SGD (lr 0.01, momentum 0.9, weight decay 5e-4) with cosine annealing over the
        attack's ``epochs``, the attack's ``criterion``, on its ``device``. Mixed precision is left out (upstream
        enables it; on a CPU it would train in bfloat16). The attack's own shadows (:meth:`attack`) train with
        the target's recipe instead, so that they imitate the target.

        Args:
            shadow_model: The untrained shadow model (trained in place).
            train_loader: Its training data, ``(x, y)`` batches.

        Returns:
            ``shadow_model``, trained, in eval mode.
        """
        import torch

        from amulet.utils import loader_batches

        device = torch.device(getattr(self, "device", "cpu"))
        epochs = int(getattr(self, "epochs", 1))
        criterion = getattr(self, "criterion", None) or torch.nn.CrossEntropyLoss()
        shadow_model.to(device)
        optimizer = torch.optim.SGD(shadow_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))
        for _ in range(epochs):
            shadow_model.train()
            for batch in loader_batches(train_loader):
                inputs, targets = batch[0].to(device), batch[1].to(device)
                optimizer.zero_grad()
                criterion(shadow_model(inputs), targets).backward()
                optimizer.step()
            scheduler.step()
        return shadow_model.eval()
