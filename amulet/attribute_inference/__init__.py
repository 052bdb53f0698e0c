"""Attribute inference (P2): Inferring sensitive attributes of records from the model's outputs.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.attribute_inference import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
