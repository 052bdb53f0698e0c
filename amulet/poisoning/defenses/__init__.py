"""Poisoning: defenses.

``__all__`` lists the defenses only, as upstream Amulet; the base class and the valuation helpers the
assessment engine uses stay importable from here (hence the ``noqa: F401``).
"""

from amulet.poisoning.defenses._base import PoisoningDefense  # noqa: F401
from amulet.poisoning.defenses._knn_shapley import knn_shapley  # noqa: F401
from amulet.poisoning.defenses._outlier_removal import (  # noqa: F401
    OutlierRemoval,
    lowest_value_split,
    remove_low_value_points,
)

__all__ = ["OutlierRemoval"]
