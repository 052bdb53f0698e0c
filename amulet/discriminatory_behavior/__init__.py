"""Discriminatory behaviour (F): Different treatment of groups defined by sensitive attributes.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.discriminatory_behavior import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
