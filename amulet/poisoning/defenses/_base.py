"""Base class of poisoning defenses."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

__all__ = ["PoisoningDefense"]


class PoisoningDefense(ABC):
    """A training procedure that resists poisoned training data; :meth:`train_robust` returns the model."""

    @abstractmethod
    def train_robust(self) -> nn.Module:
        """Train and return the robust model."""
