"""Evasion: defenses."""

__all__: list[str] = []
