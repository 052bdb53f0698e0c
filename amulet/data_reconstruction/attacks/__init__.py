"""Data reconstruction: attacks."""

from amulet.data_reconstruction.attacks._base import DataReconstructionAttack
from amulet.data_reconstruction.attacks._fredrikson_ccs_2015 import FredriksonCCS2015

__all__ = ["DataReconstructionAttack", "FredriksonCCS2015"]
