"""Base class of poisoning attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import Dataset, TensorDataset

__all__ = ["PoisoningAttack"]


class PoisoningAttack(ABC):
    """An attack that manipulates training data.

    Args:
        random_seed: Seed of every random choice the attack makes.
    """

    def __init__(self, random_seed: int) -> None:
        self.random_seed = random_seed

    @abstractmethod
    def poison_train(self, dataset: Dataset) -> TensorDataset:
        """Return the poisoned training set."""

    @abstractmethod
    def poison_test(self, dataset: Dataset) -> TensorDataset:
        """Return the triggered test set used to measure the attack's success."""
