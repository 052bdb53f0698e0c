"""Upstream Amulet 0.6's module path of the distribution inference splits (``from
amulet.distribution_inference.dataset_utils import prepare_distribution_splits``)."""

from amulet.distribution_inference.attacks._splits import DistributionSplits, prepare_distribution_splits

__all__ = ["DistributionSplits", "prepare_distribution_splits"]
