"""Discriminatory behaviour: defenses."""

from amulet.discriminatory_behavior.defenses._adversarial_debiasing import (
    AdversarialDebiasing,
    AdversaryModel,
    debiasing_loop,
    train_debiased,
)
from amulet.discriminatory_behavior.defenses._base import DiscriminatoryBehaviorDefense

__all__ = [
    "AdversarialDebiasing",
    "AdversaryModel",
    "DiscriminatoryBehaviorDefense",
    "debiasing_loop",
    "train_debiased",
]
