"""Distribution inference (P4): Inferring properties of the training distribution (e.g. the share of one sex).

Sub-packages: ``attacks``, ``defenses``, ``metrics``, and the module ``dataset_utils`` (upstream Amulet 0.6.0
layout).
"""

from amulet.distribution_inference import attacks, dataset_utils, defenses, metrics

__all__ = ["attacks", "dataset_utils", "defenses", "metrics"]
