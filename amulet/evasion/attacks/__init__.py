"""Evasion: attacks."""

from amulet.evasion.attacks._base import EvasionAttack
from amulet.evasion.attacks._pgd import EvasionPGD, pgd_linf, pgd_linf_stacked

__all__ = ["EvasionAttack", "EvasionPGD", "pgd_linf", "pgd_linf_stacked"]
