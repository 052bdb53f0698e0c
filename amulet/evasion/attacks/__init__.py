"""Evasion: attacks."""

__all__: list[str] = []
