"""Distribution inference: attacks."""

from amulet.distribution_inference.attacks._base import DistributionInferenceAttack
from amulet.distribution_inference.attacks._splits import DistributionSplits, prepare_distribution_splits
from amulet.distribution_inference.attacks._suri_evans_2022 import SuriEvans2022
from amulet.distribution_inference.attacks._whitebox_pim import WhiteBoxPIM

__all__ = [
    "DistributionInferenceAttack",
    "DistributionSplits",
    "SuriEvans2022",
    "WhiteBoxPIM",
    "prepare_distribution_splits",
]
