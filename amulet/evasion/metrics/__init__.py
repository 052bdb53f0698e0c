"""Evasion: metrics."""

__all__: list[str] = []
