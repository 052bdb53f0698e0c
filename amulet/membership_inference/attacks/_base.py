"""Base class of membership inference attacks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

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
