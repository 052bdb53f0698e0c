"""Membership inference: defenses."""

from amulet.membership_inference.defenses._base import MembershipInferenceDefense
from amulet.membership_inference.defenses._dpsgd import (
    DPSGD,
    DPTrainingResult,
    dp_train,
    make_dp_compatible,
    spent_epsilon,
)

__all__ = ["DPSGD", "DPTrainingResult", "MembershipInferenceDefense", "dp_train", "make_dp_compatible", "spent_epsilon"]
