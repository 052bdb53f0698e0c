"""Sweeps in an assessment spec: a list where a parameter takes one value makes one row per element.

``{"defense": "adversarial_training", "params": {"epsilon": [0.01, 0.03]}}`` is two rows; a parameter that takes
a list is swept by a list of lists. :func:`expand_row` gives a defense row's concrete stacks and their names.
"""

from __future__ import annotations

import itertools
import json
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from amulet import registry

if TYPE_CHECKING:
    from amulet.assess._spec import DefenseRow

__all__ = ["count_expanded_rows", "expand_params", "expand_row"]


def _accepts_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset):
        return True
    if origin is not None and str(origin).endswith("Sequence"):
        return True
    return any(_accepts_list(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def expand_params(params_model: type[BaseModel], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued parameters into the cartesian product of their values.

    A list expands unless the parameter itself takes a list; then only a list of lists expands.
    """
    axes: list[list[tuple[str, Any]]] = []
    for key, value in params.items():
        expands = _expands(params_model, key, value)
        axes.append([(key, v) for v in value] if expands and value else [(key, value)])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _expands(params_model: type[BaseModel] | None, key: str, value: Any) -> bool:
    """Whether parameter ``key``'s ``value`` is a sweep (one row per element; see :func:`expand_params`)."""
    field = params_model.model_fields.get(key) if params_model is not None else None
    takes_list = field is not None and _accepts_list(field.annotation)
    return isinstance(value, list) and (not takes_list or (len(value) > 0 and all(isinstance(v, list) for v in value)))


def count_expanded_rows(row: Any) -> int:
    """How many matrix rows one raw (not yet validated) ``defenses`` entry expands into, without expanding it.

    The product of the swept parameters' lengths over the row's stack: what :func:`expand_row` would make,
    counted in time linear in the spec's size (a 1 KB spec can sweep millions of rows). Entries that are not
    mappings count as one row (validation refuses them later).
    """
    if not isinstance(row, Mapping):
        return 1
    entries = row.get("stack") if "stack" in row else [row]
    known = {d.key for d in registry.defenses()}
    count = 1
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("params"), Mapping):
            continue
        key = entry.get("defense")
        params_model = registry.get_defense(key).params if isinstance(key, str) and key in known else None
        for name, value in entry["params"].items():
            if _expands(params_model, str(name), value) and value:
                count *= len(value)
    return count


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if not isinstance(value, str) else value


def expand_row(row: DefenseRow) -> list[dict[str, Any]]:
    """The concrete rows of one spec row: ``[{"name", "stack": [{"defense", "params"}]}]``.

    Only the parameters given in the spec are kept (the defense's defaults fill the rest when its stage
    is built), so row names and cache keys do not change when an unrelated default does.
    """
    per_entry = [
        [(entry.defense, combo) for combo in expand_params(registry.get_defense(entry.defense).params, entry.params)]
        for entry in row.stack
    ]
    base = row.name or "+".join(e.defense for e in row.stack)
    combos = list(itertools.product(*per_entry))
    rows = []
    for combo in combos:
        name = base
        if len(combos) > 1:
            varying = []
            for j, (_defense, params) in enumerate(combo):
                for key, value in params.items():
                    if isinstance(row.stack[j].params.get(key), list) and row.stack[j].params.get(key) != value:
                        varying.append(f"{key}={_format_value(value)}")
            name = f"{base} ({', '.join(varying)})"
        rows.append({"name": name, "stack": [{"defense": d, "params": dict(p)} for d, p in combo]})
    return rows
