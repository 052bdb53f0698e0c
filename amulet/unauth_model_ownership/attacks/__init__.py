"""Model stealing: attacks."""

__all__: list[str] = []
