"""Membership inference: defenses."""

__all__: list[str] = []
