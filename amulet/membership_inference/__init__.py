"""Membership inference (P1): Inferring whether a record was in the training data.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.membership_inference import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
