"""What every upload check shares: :class:`IntakeError` (status, field, message), finite numbers, and the
bounds a spec's defenses, planned rows and layer lists must keep (the service's settings)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from amulet.assess._spec import count_expanded_rows
from backend.core.config import Settings
from backend.models import Cell

__all__ = [
    "IntakeError",
    "check_defense_rows",
    "check_finite_numbers",
    "check_layer_lists",
    "check_planned_rows",
    "non_finite_number",
    "setting_limit",
]


class IntakeError(ValueError):
    """An upload failed validation: ``status_code`` (422, 413 or 415), ``field`` and ``message``."""

    def __init__(self, field_name: str, message: str, status_code: int = 422) -> None:
        self.field = field_name
        self.message = message
        self.status_code = status_code
        super().__init__(message)


def non_finite_number(value: Any, field: str) -> tuple[str, float] | None:
    """The first non-finite float (NaN, Infinity, or a literal like ``1e400``) in a parsed JSON ``value``, with
    its field path under ``field`` (``spec.seeds[0]``); None when every number is finite.

    Walked without recursion: a request body nested a few hundred levels deep is valid JSON.
    """
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, item
        if isinstance(item, dict):
            stack.extend((f"{path}.{key}", v) for key, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def check_finite_numbers(value: Any, field: str) -> None:
    """Refuse a parsed JSON ``value`` that holds NaN or an infinite number (Python's parser reads ``NaN``,
    ``Infinity`` and ``1e400``; no JSON answer or PostgreSQL JSON column can hold them).

    Raises:
        IntakeError: 422 naming the first such field.
    """
    found = non_finite_number(value, field)
    if found is not None:
        path, number = found
        raise IntakeError(
            path, f"{path} is {number}, not a finite number: NaN and infinite values are refused. Use a finite number."
        )


def setting_limit(value: int, setting: str) -> str:
    """How a message names a bound: the value, the setting and its environment variable."""
    return f"the limit of {value:,} (setting {setting}, AMULET_{setting.upper()})"


def check_defense_rows(defenses: Any, settings: Settings) -> int | None:
    """Refuse a raw spec's defense row names longer than ``max_name_length``; return how many matrix rows the
    ``defenses`` list makes (None when it is not a list).

    A swept parameter counts one row per value, counted and never expanded here: a 1 KB spec can sweep
    millions of rows, which expanding would take minutes and gigabytes to find out.

    Raises:
        IntakeError: 422 naming the row's ``name`` field, the limit and the setting.
    """
    if not isinstance(defenses, list):
        return None
    for i, row in enumerate(defenses):
        name = row.get("name") if isinstance(row, dict) else None
        if isinstance(name, str) and len(name) > settings.max_name_length:
            raise IntakeError(
                f"spec.defenses[{i}].name",
                f"defenses[{i}].name has {len(name):,} characters, more than "
                f"{setting_limit(settings.max_name_length, 'max_name_length')}. Use a shorter row name.",
            )
    return sum(count_expanded_rows(row) for row in defenses)


def check_planned_rows(rows: Iterable[str]) -> None:
    """Refuse planned row names longer than the database stores (a swept row's name adds the swept values
    to the row's own, so a short enough ``name`` can still make a long row name).

    Raises:
        IntakeError: 422 on ``spec.defenses`` naming the row and the limit.
    """

    limit = int(Cell.__table__.c.row.type.length)  # type: ignore[attr-defined]
    for name in rows:
        if len(name) > limit:
            raise IntakeError(
                "spec.defenses",
                f"The row {name[:80]!r}... has a {len(name):,}-character name, more than the {limit} the service "
                "stores. Give the row a shorter 'name', or sweep fewer parameters in it (a swept row's name "
                "lists the values that vary).",
            )


def check_layer_lists(config: Any, settings: Settings, *, field_prefix: str, where: str) -> None:
    """Refuse a model config's layer lists (``hidden_layer_sizes``, ``fc_layers``) that are not positive
    integers, wider than ``max_layer_width`` or longer than ``max_model_layers`` (building and checking a
    model takes time in the number of layers), before any model is built.

    Args:
        config: The ``config`` mapping of a model (anything else is left to the spec's own validation).
        settings: Holds the bounds.
        field_prefix: The request field of ``config`` (e.g. ``"spec.model.config"``); the error names
            ``<field_prefix>.<list name>``.
        where: How messages name ``config`` (e.g. ``"model.config"``).

    Raises:
        IntakeError: 422 naming the field, the limit and the setting.
    """
    if not isinstance(config, dict):
        return
    for name in ("hidden_layer_sizes", "fc_layers"):
        widths = config.get(name)
        if not isinstance(widths, (list, tuple)):
            continue
        field = f"{field_prefix}.{name}"
        if len(widths) > settings.max_model_layers:
            raise IntakeError(
                field,
                f"{where}.{name}: {len(widths):,} layers, more than "
                f"{setting_limit(settings.max_model_layers, 'max_model_layers')}. "
                "Use fewer layers (e.g. the capacities m1..m4).",
            )
        bad = [w for w in widths if not isinstance(w, int) or isinstance(w, bool) or w < 1]
        if bad:
            raise IntakeError(
                field,
                f"{where}.{name}: layer widths must be positive integers; got {bad[0]!r} in {list(widths)[:20]}. "
                "Use whole numbers of units such as [64, 32].",
            )
        too_wide = [w for w in widths if w > settings.max_layer_width]
        if too_wide:
            raise IntakeError(
                field,
                f"{where}.{name}: layer widths must be at most {settings.max_layer_width}; got {too_wide[0]} "
                f"in {list(widths)[:20]}, more than {setting_limit(settings.max_layer_width, 'max_layer_width')}. "
                "Use smaller layers (e.g. the capacities m1..m4).",
            )
