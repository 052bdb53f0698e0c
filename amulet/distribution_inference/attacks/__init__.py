"""Distribution inference: attacks."""

__all__: list[str] = []
