"""Attribute inference: attacks."""

from amulet.attribute_inference.attacks._base import AttributeInferenceAttack
from amulet.attribute_inference.attacks._duddu_cikm_2022 import DudduCIKM2022

__all__ = ["AttributeInferenceAttack", "DudduCIKM2022"]
