"""Data reconstruction: defenses."""

__all__: list[str] = []
