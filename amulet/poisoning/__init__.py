"""Poisoning (S2): Backdoors planted by manipulating part of the training data.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.poisoning import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
