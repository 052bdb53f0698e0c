"""Tables and figures of the Run page, from ``GET /assessments/{id}`` (pure functions).

Example:
    >>> detail = {"status": "running", "progress": {"fraction": 0.5, "cells_done": 1, "cells_total": 2,
    ...           "trainings_done": 1, "trainings_total": 1, "eta_seconds": 12.0, "cells_by_status": {"ok": 1}},
    ...           "cells": [{"row": "baseline", "risk": "evasion", "attack": "pgd", "seed": 0, "status": "ok"},
    ...                     {"row": "baseline", "risk": "evasion", "attack": "pgd", "seed": 1, "status": "running"}]}
    >>> summarize_progress(detail)["label"]
    '2 of 3 units done (1/1 trainings, 1/2 cells) · about 12 s left'
    >>> cell_grid(detail)[0]["done"]
    '1/2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboard.specs import format_duration

__all__ = [
    "ACTIVE_STATUSES",
    "STATUS_ICONS",
    "cell_grid",
    "current_step",
    "finish_message",
    "is_active",
    "summarize_progress",
]

#: ``stalled``: running, but its worker died; a worker's recovery sweep resumes it, so keep polling.
ACTIVE_STATUSES = ("queued", "running", "finalizing", "stalled")
#: Status marks from the plain Unicode blocks every common font covers (DejaVu Sans, Liberation): emoji render
#: as empty boxes on machines without an emoji font.
STATUS_ICONS = {
    "queued": "◷",
    "running": "▶",
    "finalizing": "✎",
    "succeeded": "✔",
    "partial": "⚠",
    "failed": "✘",
    "cancelled": "■",
    "stalled": "⚠",
    "pending": "◷",
    "ok": "✔",
    "not_run": "○",
    "error": "✘",
    "done": "✔",
}
_DONE = {"ok", "not_run", "error", "done", "cancelled"}


def is_active(detail: Mapping[str, Any]) -> bool:
    """Whether the assessment is still queued or running."""
    return detail.get("status") in ACTIVE_STATUSES


def summarize_progress(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Overall fraction (0..1), a one-line label and the ETA in seconds."""
    p = detail.get("progress") or {}
    done = int(p.get("trainings_done", 0)) + int(p.get("cells_done", 0))
    total = int(p.get("trainings_total", 0)) + int(p.get("cells_total", 0))
    fraction = float(p.get("fraction", done / total if total else 0.0))
    eta = p.get("eta_seconds")
    label = (
        f"{done} of {total} units done ({p.get('trainings_done', 0)}/{p.get('trainings_total', 0)} trainings, "
        f"{p.get('cells_done', 0)}/{p.get('cells_total', 0)} cells)"
    )
    if is_active(detail) and eta is not None:
        label += f" · about {format_duration(eta)} left"
    return {"fraction": max(0.0, min(1.0, fraction)), "label": label, "eta_seconds": eta, "done": done, "total": total}


def cell_grid(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per (row, risk, attack): seeds done, a progress fraction, status icons per seed and errors."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for cell in detail.get("cells") or []:
        groups.setdefault((cell.get("row", ""), cell.get("risk", ""), cell.get("attack", "")), []).append(cell)
    out = []
    for (row, risk, attack), cells in groups.items():
        cells = sorted(cells, key=lambda c: c.get("seed", 0))
        done = sum(c.get("status") in _DONE for c in cells)
        out.append(
            {
                "row": row,
                "risk": risk,
                "attack": attack,
                "progress": done / len(cells),
                "done": f"{done}/{len(cells)}",
                "seeds": " ".join(f"{c.get('seed')}{STATUS_ICONS.get(str(c.get('status')), '?')}" for c in cells),
                "seconds": round(sum(float(c.get("seconds") or 0.0) for c in cells), 1),
                "errors": "; ".join(
                    str(c.get("reason")) for c in cells if c.get("status") == "error" and c.get("reason")
                ),
            }
        )
    return out


def current_step(detail: Mapping[str, Any]) -> str:
    """The most recent progress event's message (what the worker is doing now)."""
    events = detail.get("events") or []
    if not events:
        return ""
    latest = max(events, key=lambda e: (str(e.get("created_at", "")), e.get("id", 0)))
    message = str(latest.get("message", ""))
    if latest.get("total"):
        message += f" ({latest.get('completed', 0)}/{latest['total']})"
    return message


def finish_message(detail: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(level, text)`` the Run page shows once the assessment is over (``None`` while it is active).

    ``succeeded``: success; ``partial`` (some training or cell errored, the rest is reported) and
    ``cancelled``: warning; ``failed``: error. The text names the assessment's error when there is one.

    Example:
        >>> level, text = finish_message({"status": "partial", "error": "partial: 8 of 16 cells errored"})
        >>> level, text.startswith("Finished with errors (partial): partial: 8 of 16 cells errored.")
        ('warning', True)
    """
    status, error = detail.get("status"), detail.get("error")
    if status == "succeeded":
        return "success", "Finished. The interaction matrix is ready."
    if status == "partial":
        return (
            "warning",
            f"Finished with errors (partial): {error or 'some cells errored'}. The results show what was measured; "
            "errored cells are grey and their checks could not pass.",
        )
    if status == "failed":
        return "error", f"This assessment failed: {error or 'the errors above say why'}."
    if status == "cancelled":
        return "warning", "This assessment was cancelled."
    return None
