"""Discriminatory behaviour: defenses."""

__all__: list[str] = []
