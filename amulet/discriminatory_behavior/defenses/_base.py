"""Base class of the defenses against discriminatory behaviour."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["DiscriminatoryBehaviorDefense"]


class DiscriminatoryBehaviorDefense(ABC):
    """A training procedure that makes a model treat sensitive groups more alike.

    Args:
        model: The model to train.
        criterion: Task loss (e.g. ``nn.CrossEntropyLoss()``).
        optimizer: Optimizer over ``model``'s parameters.
        train_loader: Yields ``(x, y, z)`` training batches, z = sensitive attributes.
        test_loader: Yields ``(x, y, z)`` evaluation batches.
        device: Torch device.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        test_loader: DataLoader,
        device: str | torch.device,
    ):
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.test_loader = test_loader
        self.device = device

    @abstractmethod
    def train_fair(self) -> nn.Module:
        """Train the model with the defense and return it."""
