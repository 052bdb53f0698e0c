"""Evasion: defenses.

``__all__`` lists the defenses only, as upstream Amulet; the base class and the batch transforms the
assessment engine uses stay importable from here (hence the ``noqa: F401``).
"""

from amulet.evasion.defenses._adversarial_training import (  # noqa: F401
    AdversarialTrainingPGD,
    pgd_batch_transform,
    pgd_stacked_batch_transform,
)
from amulet.evasion.defenses._base import EvasionDefense  # noqa: F401

__all__ = ["AdversarialTrainingPGD"]
