"""Data reconstruction (P3): Reconstructing representative training inputs (model inversion).

Sub-packages: ``attacks``, ``defenses``, ``metrics`` (upstream Amulet 0.6.0 layout), plus
:class:`TabularLayout`, the column layout (numeric columns, one-hot blocks) of encoded tabular inputs.
"""

from amulet.data_reconstruction import attacks, defenses, metrics
from amulet.data_reconstruction._layout import TabularLayout

__all__ = ["TabularLayout", "attacks", "defenses", "metrics"]
