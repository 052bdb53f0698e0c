"""Attribute inference: metrics."""

from amulet.attribute_inference.metrics._evaluate import evaluate_attribute_inference

__all__ = ["evaluate_attribute_inference"]
