"""Discriminatory behaviour: attacks."""

__all__: list[str] = []
