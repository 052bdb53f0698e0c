"""Data reconstruction (P3): Reconstructing representative training inputs (model inversion).

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout).
"""

from amulet.data_reconstruction import attacks, defenses, metrics

__all__ = ["attacks", "defenses", "metrics"]
