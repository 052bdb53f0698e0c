"""Poisoning: metrics."""

from amulet.poisoning.metrics._backdoor import backdoor_success_rate

__all__ = ["backdoor_success_rate"]
