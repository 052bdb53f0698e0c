"""Base class of membership inference defenses."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

__all__ = ["MembershipInferenceDefense"]


class MembershipInferenceDefense(ABC):
    """A training procedure that limits what a model reveals about individual training records.

    Subclasses implement :meth:`train_private`, which returns the trained model.
    """

    @abstractmethod
    def train_private(self) -> nn.Module:
        """Train the model privately and return it."""
