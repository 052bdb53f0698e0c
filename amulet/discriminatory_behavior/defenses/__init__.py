"""Discriminatory behaviour: defenses.

``__all__`` lists the defenses only, as upstream Amulet; the base class, the adversary network and the
training loops the assessment engine uses stay importable from here (hence the ``noqa: F401``).
"""

from amulet.discriminatory_behavior.defenses._adversarial_debiasing import (  # noqa: F401
    AdversarialDebiasing,
    AdversaryModel,
    debiasing_loop,
    train_debiased,
)
from amulet.discriminatory_behavior.defenses._base import DiscriminatoryBehaviorDefense  # noqa: F401
from amulet.discriminatory_behavior.defenses._stacked_debiasing import (  # noqa: F401
    debiasing_stacked_loop,
    train_debiased_stacked,
)

__all__ = ["AdversarialDebiasing"]
