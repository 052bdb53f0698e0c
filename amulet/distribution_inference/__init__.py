"""Distribution inference (P4): Inferring properties of the training distribution (e.g. the share of one sex).

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.distribution_inference import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
