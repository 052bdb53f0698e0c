"""Model stealing: attacks."""

from amulet.unauth_model_ownership.attacks._base import UnauthModelOwnershipAttack
from amulet.unauth_model_ownership.attacks._extraction import ModelExtraction

__all__ = ["ModelExtraction", "UnauthModelOwnershipAttack"]
