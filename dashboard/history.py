"""The History page's filtering and table rows (pure functions).

Example:
    >>> items = [{"id": "a1", "name": "census quick", "status": "succeeded", "created_at": "2026-01-02T10:00:00Z"},
    ...          {"id": "b2", "name": "fmnist", "status": "failed", "created_at": "2025-12-31T10:00:00Z"}]
    >>> [a["id"] for a in filter_assessments(items, statuses=["succeeded"], text="", since=None)]
    ['a1']
    >>> from datetime import date
    >>> [a["id"] for a in filter_assessments(items, statuses=[], text="", since=date(2026, 1, 1))]
    ['a1']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from dashboard.progress import STATUS_ICONS
from dashboard.specs import elapsed_seconds, format_duration

__all__ = ["filter_assessments", "history_rows"]


def _created(item: Mapping[str, Any]) -> datetime | None:
    value = item.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def filter_assessments(
    items: Iterable[Mapping[str, Any]], *, statuses: Sequence[str], text: str, since: date | None
) -> list[dict[str, Any]]:
    """Assessments with one of ``statuses`` (any if empty), ``text`` in name or id, created on/after ``since``."""
    needle = text.strip().lower()
    out = []
    for item in items:
        if statuses and item.get("status") not in statuses:
            continue
        if needle and needle not in str(item.get("name", "")).lower() and needle not in str(item.get("id", "")):
            continue
        created = _created(item)
        if since is not None and (created is None or created.date() < since):
            continue
        out.append(dict(item))
    return out


def history_rows(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One table row per assessment: status, name, dates, size, duration, exit code, error, warnings, id."""
    return [
        {
            "status": f"{STATUS_ICONS.get(str(a.get('status')), '')} {a.get('status')}",
            "name": a.get("name"),
            "created": str(a.get("created_at", ""))[:19].replace("T", " "),
            "trainings": a.get("n_trainings"),
            "cells": a.get("n_cells"),
            "duration": format_duration(elapsed_seconds(a)) if a.get("finished_at") else "",
            "exit code": a.get("exit_code"),
            "error": (a.get("error") or "")[:120],
            "warnings": "; ".join(str(w.get("message", "")) for w in a.get("warnings") or [])[:160],
            "id": a.get("id"),
        }
        for a in items
    ]
