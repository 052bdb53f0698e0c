"""Model stealing: metrics."""

from amulet.unauth_model_ownership.metrics._extraction import evaluate_extraction

__all__ = ["evaluate_extraction"]
