"""Discriminatory behaviour: metrics."""

from amulet.discriminatory_behavior.metrics._discriminatory_behavior import DiscriminatoryBehavior

__all__ = ["DiscriminatoryBehavior"]
