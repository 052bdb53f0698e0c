"""Model stealing: defenses."""

__all__: list[str] = []
