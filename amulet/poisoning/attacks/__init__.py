"""Poisoning: attacks."""

__all__: list[str] = []
