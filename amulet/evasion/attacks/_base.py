"""Base class of evasion attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import DataLoader

__all__ = ["EvasionAttack"]


class EvasionAttack(ABC):
    """An attack that perturbs test inputs so that a model misclassifies them.

    Subclasses implement :meth:`attack`, which returns a loader of (adversarial input, true label) pairs
    in the order of the original test loader.
    """

    @abstractmethod
    def attack(self) -> DataLoader:
        """Run the attack and return a loader of adversarial examples with their true labels."""
