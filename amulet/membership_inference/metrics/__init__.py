"""Membership inference: metrics."""

from amulet.membership_inference.metrics._mi_metrics import compute_mi_metrics, roc_curve_points

__all__ = ["compute_mi_metrics", "roc_curve_points"]
