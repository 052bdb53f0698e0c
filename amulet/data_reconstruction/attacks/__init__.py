"""Data reconstruction: attacks."""

__all__: list[str] = []
