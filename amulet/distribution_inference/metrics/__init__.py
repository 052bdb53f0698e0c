"""Distribution inference: metrics."""

__all__: list[str] = []
