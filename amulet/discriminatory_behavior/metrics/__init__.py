"""Discriminatory behaviour: metrics."""

__all__: list[str] = []
