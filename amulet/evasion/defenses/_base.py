"""Base class of evasion defenses."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

__all__ = ["EvasionDefense"]


class EvasionDefense(ABC):
    """A training procedure that makes a model robust to evasion; :meth:`train_robust` returns the model."""

    @abstractmethod
    def train_robust(self) -> nn.Module:
        """Train and return the robust model."""
