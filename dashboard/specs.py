"""Assessment specs in the dashboard: building them from form choices, counting work, YAML round trips.

Everything here is pure (no Streamlit, no HTTP) so pages stay thin and tests call it directly. The spec
format is :class:`amulet.assess.AssessmentSpec`; validation is the API's job (``POST /assessments``
answers 422 with field paths), this module only mirrors the plan's arithmetic to show how much work a
spec asks for before it is launched.

Example:
    >>> spec = {"dataset": {"name": "census"}, "risks": [{"risk": "evasion"}],
    ...         "defenses": [{"stack": [{"defense": "dp_sgd", "params": {"noise_multiplier": [0.5, 1.0]}}]}],
    ...         "seeds": [0, 1]}
    >>> count_work(spec, {"defenses": []})
    {'rows': 3, 'columns': 1, 'trainings': 6, 'cells': 6}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml

__all__ = [
    "SPEC_SECTIONS",
    "assemble_spec",
    "DEFAULT_SECONDS_PER_CELL",
    "DEFAULT_SECONDS_PER_TRAINING",
    "count_work",
    "elapsed_seconds",
    "estimate_seconds",
    "format_duration",
    "parse_seeds",
    "section_of",
    "spec_from_yaml",
    "spec_to_yaml",
]

#: Rough seconds one census-sized training / cell takes on a laptop CPU, used until the API's history says more.
DEFAULT_SECONDS_PER_TRAINING = 8.0
DEFAULT_SECONDS_PER_CELL = 6.0


def _takes_list(schema: Mapping[str, Any], name: str) -> bool:
    """Whether the parameter ``name`` of a params JSON Schema itself takes a list (then lists don't expand)."""
    node = (schema.get("properties") or {}).get(name) or {}
    options = [node, *node.get("anyOf", [])]
    return any(o.get("type") == "array" for o in options)


def _expanded_count(params: Mapping[str, Any], schema: Mapping[str, Any]) -> int:
    count = 1
    for name, value in params.items():
        if isinstance(value, list) and value:
            takes_list = _takes_list(schema, name)
            if not takes_list or all(isinstance(v, list) for v in value):
                count *= len(value)
    return count


def count_work(spec: Mapping[str, Any], catalog: Mapping[str, Any]) -> dict[str, int]:
    """How many rows, risk columns, trainings and cells ``spec`` expands into.

    Rows are the implicit baseline plus every defense row, with list-valued parameters expanded into one
    row per combination (as :func:`amulet.assess.plan_assessment` does); one training per (row, seed) and
    one cell per (row, column, seed).

    Args:
        spec: An assessment spec as a dict.
        catalog: The API's ``/catalog`` (parameter schemas decide which lists expand).
    """
    schemas = {d["key"]: d.get("params_schema", {}) for d in catalog.get("defenses", [])}
    n_rows = 1
    for row in spec.get("defenses") or []:
        stack = row.get("stack") or (
            [{"defense": row["defense"], "params": row.get("params", {})}] if "defense" in row else []
        )
        combos = 1
        for entry in stack:
            combos *= _expanded_count(entry.get("params") or {}, schemas.get(entry.get("defense", ""), {}))
        n_rows += combos
    n_columns = len(spec.get("risks") or [])
    n_seeds = len(spec.get("seeds") or [0, 1, 2])
    return {
        "rows": n_rows,
        "columns": n_columns,
        "trainings": n_rows * n_seeds,
        "cells": n_rows * n_columns * n_seeds,
    }


def estimate_seconds(
    work: Mapping[str, int],
    *,
    history: Iterable[Mapping[str, Any]] = (),
    workers: int = 1,
) -> float:
    """Estimated wall time of ``work`` (from :func:`count_work`).

    Args:
        work: Counts of trainings and cells.
        history: Finished assessments as the API lists them; when they report ``seconds`` together with
            ``n_trainings`` and ``n_cells``, their average time per unit replaces the defaults.
        workers: Worker processes running units in parallel.
    """
    per_unit: list[float] = []
    for item in history:
        seconds = item.get("seconds") or item.get("duration_seconds") or elapsed_seconds(item)
        units = (item.get("n_trainings") or 0) + (item.get("n_cells") or 0)
        if isinstance(seconds, (int, float)) and seconds > 0 and units:
            per_unit.append(float(seconds) / units)
    if per_unit:
        unit = sum(per_unit) / len(per_unit)
        total = unit * (work["trainings"] + work["cells"])
    else:
        total = work["trainings"] * DEFAULT_SECONDS_PER_TRAINING + work["cells"] * DEFAULT_SECONDS_PER_CELL
    return total / max(1, workers)


def elapsed_seconds(item: Mapping[str, Any]) -> float | None:
    """Seconds between ``started_at`` and ``finished_at`` (ISO 8601) of a finished assessment."""
    start, end = item.get("started_at"), item.get("finished_at")
    if not (isinstance(start, str) and isinstance(end, str)):
        return None
    try:
        delta = datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
            start.replace("Z", "+00:00")
        )
    except ValueError:
        return None
    return delta.total_seconds()


def format_duration(seconds: float | None) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"``, ``"42 s"``; an em dash for unknown.

    Example:
        >>> format_duration(3725), format_duration(185), format_duration(4.2), format_duration(None)
        ('1 h 02 min', '3 min 05 s', '4 s', '—')
    """
    if seconds is None:
        return "—"
    seconds = max(0, round(float(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0, 1, 2"`` or a range ``"0-4"``.

    Raises:
        ValueError: naming the offending token.

    Example:
        >>> parse_seeds("0, 1, 5-7")
        [0, 1, 5, 6, 7]
    """
    seeds: list[int] = []
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if not token:
            continue
        try:
            if "-" in token[1:]:
                low, high = token.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(token))
        except ValueError:
            raise ValueError(
                f"The seeds must be non-negative integers such as '0, 1, 2' or '0-4'. Got {token!r}."
            ) from None
    if not seeds:
        raise ValueError("Give at least one seed, such as '0, 1, 2'.")
    if any(s < 0 for s in seeds):
        raise ValueError(f"The seeds must be non-negative. Got {seeds}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"The seeds must be distinct. Got {seeds}.")
    return seeds


def spec_to_yaml(spec: Mapping[str, Any]) -> str:
    """YAML text of a spec (for ``amulet assess`` / ``amulet submit``), keys in the spec's own order."""
    return yaml.safe_dump(_plain(spec), sort_keys=False, allow_unicode=True)


def spec_from_yaml(text: str | bytes) -> dict[str, Any]:
    """A spec dict from YAML or JSON text.

    Raises:
        ValueError: when the text is not YAML/JSON or not a mapping.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"The file is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"An assessment spec must be a mapping of fields. Got {type(data).__name__}.")
    return dict(data)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: Top-level sections of a spec, in the order a YAML file lists them.
SPEC_SECTIONS = (
    "version",
    "name",
    "description",
    "dataset",
    "model",
    "training",
    "defenses",
    "risks",
    "policy",
    "seeds",
)


def assemble_spec(
    *,
    name: str,
    dataset: Mapping[str, Any],
    model: Mapping[str, Any],
    training: Mapping[str, Any],
    defenses: Iterable[Mapping[str, Any]],
    risks: Iterable[Mapping[str, Any]],
    policy: Iterable[Mapping[str, Any]],
    seeds: Iterable[int],
    description: str = "",
) -> dict[str, Any]:
    """An assessment spec dict from the pieces a form produced (empty optional parts left out).

    Example:
        >>> spec = assemble_spec(name="quick", dataset={"name": "census"}, model={"architecture": "linearnet"},
        ...                      training={"epochs": 1}, defenses=[], risks=[{"risk": "evasion"}], policy=[],
        ...                      seeds=[0])
        >>> list(spec)
        ['version', 'name', 'dataset', 'model', 'training', 'risks', 'seeds']
    """
    spec: dict[str, Any] = {
        "version": 1,
        "name": name or "assessment",
        "description": description,
        "dataset": dict(dataset),
        "model": dict(model),
        "training": dict(training),
        "defenses": [dict(d) for d in defenses],
        "risks": [dict(r) for r in risks],
        "policy": [dict(p) for p in policy],
        "seeds": list(seeds),
    }
    return {k: v for k, v in spec.items() if v not in ("", [], None) or k in ("risks", "seeds")}


def section_of(path: str) -> str:
    """The top-level section an error path such as ``defenses[0].stack[0].params.epsilon`` belongs to.

    Example:
        >>> section_of("defenses[0].stack[0].params.epsilon"), section_of("body.spec.seeds"), section_of("")
        ('defenses', 'seeds', 'spec')
    """
    parts = [p for p in path.replace("[", ".").replace("]", "").split(".") if p and not p.isdigit()]
    for part in parts:
        if part in SPEC_SECTIONS:
            return part
    return "spec"
