"""Base class of model-stealing attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

__all__ = ["UnauthModelOwnershipAttack"]


class UnauthModelOwnershipAttack(ABC):
    """An attack that obtains a functional copy of a model; :meth:`attack` returns the copy."""

    @abstractmethod
    def attack(self) -> nn.Module:
        """Run the attack and return the stolen model."""
