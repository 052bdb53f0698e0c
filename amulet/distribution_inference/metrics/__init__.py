"""Distribution inference: metrics."""

from amulet.distribution_inference.metrics._distinguishing import evaluate_distinguishing_accuracy

__all__ = ["evaluate_distinguishing_accuracy"]
