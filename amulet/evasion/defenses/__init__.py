"""Evasion: defenses."""

from amulet.evasion.defenses._adversarial_training import (
    AdversarialTrainingPGD,
    pgd_batch_transform,
    pgd_stacked_batch_transform,
)
from amulet.evasion.defenses._base import EvasionDefense

__all__ = ["AdversarialTrainingPGD", "EvasionDefense", "pgd_batch_transform", "pgd_stacked_batch_transform"]
