"""Membership inference: attacks."""

from amulet.membership_inference.attacks._base import MembershipInferenceAttack
from amulet.membership_inference.attacks._lira import LiRA, lira_scores, logit_scaled_confidence, make_keep_matrix

__all__ = ["LiRA", "MembershipInferenceAttack", "lira_scores", "logit_scaled_confidence", "make_keep_matrix"]
