"""Poisoning: defenses."""

from amulet.poisoning.defenses._base import PoisoningDefense
from amulet.poisoning.defenses._knn_shapley import knn_shapley
from amulet.poisoning.defenses._outlier_removal import OutlierRemoval, lowest_value_split, remove_low_value_points

__all__ = ["OutlierRemoval", "PoisoningDefense", "knn_shapley", "lowest_value_split", "remove_low_value_points"]
