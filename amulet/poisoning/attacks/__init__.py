"""Poisoning: attacks."""

from amulet.poisoning.attacks._badnets import BadNets, add_trigger
from amulet.poisoning.attacks._base import PoisoningAttack

__all__ = ["BadNets", "PoisoningAttack", "add_trigger"]
