"""Poisoning: defenses."""

__all__: list[str] = []
