"""Upstream Amulet 0.6's module path of :class:`DistributionInferenceAttack`."""

from amulet.distribution_inference.attacks._base import DistributionInferenceAttack

__all__ = ["DistributionInferenceAttack"]
