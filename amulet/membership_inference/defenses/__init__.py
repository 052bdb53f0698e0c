"""Membership inference: defenses.

``__all__`` lists the defenses only, as upstream Amulet 0.6.0 does. The helpers the engine and tests use
(:class:`MembershipInferenceDefense`, :class:`DPTrainingResult`, :func:`dp_train`, :func:`make_dp_compatible`,
:func:`spent_epsilon`) stay importable from here.
"""

from amulet.membership_inference.defenses._base import MembershipInferenceDefense as MembershipInferenceDefense
from amulet.membership_inference.defenses._dpsgd import DPSGD
from amulet.membership_inference.defenses._dpsgd import DPTrainingResult as DPTrainingResult
from amulet.membership_inference.defenses._dpsgd import dp_train as dp_train
from amulet.membership_inference.defenses._dpsgd import make_dp_compatible as make_dp_compatible
from amulet.membership_inference.defenses._dpsgd import spent_epsilon as spent_epsilon

__all__ = ["DPSGD"]
