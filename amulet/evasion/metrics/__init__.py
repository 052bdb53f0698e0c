"""Evasion: metrics."""

from amulet.evasion.metrics._robustness import attack_success_rate, robust_accuracy

__all__ = ["attack_success_rate", "robust_accuracy"]
