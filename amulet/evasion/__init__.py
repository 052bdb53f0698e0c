"""Evasion (S1): Adversarial examples: small input perturbations that change the model's prediction.

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.evasion import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
