"""Model stealing: metrics."""

__all__: list[str] = []
