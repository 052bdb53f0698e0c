"""Distribution inference: defenses (none yet)."""

__all__: list[str] = []
