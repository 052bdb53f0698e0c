"""Data reconstruction: metrics."""

__all__: list[str] = []
