"""Distribution inference: defenses (none yet, as upstream; DP-SGD of membership inference is the general one)."""

__all__: list[str] = []
