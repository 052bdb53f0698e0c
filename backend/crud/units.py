"""Trainings and cells (the units of an assessment): idempotent upserts, listings and pages, progress, status
counts, error messages, estimates and the metric rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, union_all, update
from sqlalchemy.orm import Session

from backend.crud._upsert import upsert as _upsert
from backend.models import (
    CELL_DONE,
    Assessment,
    Cell,
    Event,
    MetricValue,
    Training,
    utcnow,
)


def upsert_training(
    session: Session,
    *,
    assessment_id: str,
    key: str,
    status: str,
    error: str | None = None,
    seconds: float | None = None,
    attempt: bool = False,
) -> None:
    """Write a training's status (unique by assessment and key)."""
    values: dict[str, Any] = {"status": status, "error": error, "seconds": seconds, "updated_at": utcnow()}
    stmt = update(Training).where(Training.assessment_id == assessment_id, Training.key == key)
    if attempt:
        values["attempts"] = Training.attempts + 1
    if session.execute(stmt.values(**values)).rowcount == 0:  # type: ignore[attr-defined]
        values["attempts"] = 1 if attempt else 0
        _upsert(
            session,
            Training.__table__,  # type: ignore[arg-type]
            {"assessment_id": assessment_id, "key": key, **values},
            ("assessment_id", "key"),
            ("status", "error", "seconds", "updated_at"),
        )


def upsert_cell(
    session: Session,
    *,
    assessment_id: str,
    key: str,
    status: str,
    row: str = "",
    risk: str = "",
    attack: str = "",
    seed: int = 0,
    metrics: dict[str, float] | None = None,
    reason: str | None = None,
    seconds: float | None = None,
    result: dict[str, Any] | None = None,
    attempt: bool = False,
) -> int:
    """Write a cell (insert or update by its unique key) and its metric values; returns the cell id."""
    values: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "seconds": seconds,
        "result": result,
        "updated_at": utcnow(),
    }
    stmt = update(Cell).where(Cell.assessment_id == assessment_id, Cell.key == key)
    updates = dict(values)
    if attempt:
        updates["attempts"] = Cell.attempts + 1
    if session.execute(stmt.values(**updates)).rowcount == 0:  # type: ignore[attr-defined]
        _upsert(
            session,
            Cell.__table__,  # type: ignore[arg-type]
            {
                "assessment_id": assessment_id,
                "key": key,
                "row": row,
                "risk": risk,
                "attack": attack,
                "seed": seed,
                "attempts": 1 if attempt else 0,
                **values,
            },
            ("assessment_id", "key"),
            tuple(values),
        )
    cell_id = int(session.scalar(select(Cell.id).where(Cell.assessment_id == assessment_id, Cell.key == key)) or 0)
    for metric, value in (metrics or {}).items():
        _upsert(
            session,
            MetricValue.__table__,  # type: ignore[arg-type]
            {"cell_id": cell_id, "metric": metric, "value": float(value)},
            ("cell_id", "metric"),
            ("value",),
        )
    return cell_id


def list_trainings(session: Session, *, assessment_id: str) -> list[Training]:
    """The assessment's trainings in plan order."""
    return list(session.scalars(select(Training).where(Training.assessment_id == assessment_id).order_by(Training.id)))


def list_cells(session: Session, *, assessment_id: str) -> list[Cell]:
    """The assessment's cells in plan order."""
    return list(session.scalars(select(Cell).where(Cell.assessment_id == assessment_id).order_by(Cell.id)))


def page_cells(
    session: Session, *, assessment_id: str, limit: int, offset: int, status: str | None = None
) -> tuple[list[Cell], int]:
    """A page of the assessment's cells in plan order (optionally one status) and their total count."""
    where = [Cell.assessment_id == assessment_id]
    if status:
        where.append(Cell.status == status)
    rows = session.scalars(select(Cell).where(*where).order_by(Cell.id).limit(limit).offset(offset))
    return list(rows), int(session.scalar(select(func.count()).select_from(Cell).where(*where)) or 0)


def page_trainings(session: Session, *, assessment_id: str, limit: int, offset: int) -> tuple[list[Training], int]:
    """A page of the assessment's trainings in plan order and their total count."""
    where = Training.assessment_id == assessment_id
    rows = session.scalars(select(Training).where(where).order_by(Training.id).limit(limit).offset(offset))
    return list(rows), int(session.scalar(select(func.count()).select_from(Training).where(where)) or 0)


def page_results(session: Session, *, assessment_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of the engine results of the assessment's finished cells, in plan order, and their count."""
    where = (Cell.assessment_id == assessment_id, Cell.result.is_not(None), Cell.status.in_(CELL_DONE))
    rows = session.scalars(select(Cell.result).where(*where).order_by(Cell.id).limit(limit).offset(offset))
    total = session.scalar(select(func.count()).select_from(Cell).where(*where))
    return [dict(r) for r in rows if isinstance(r, dict)], int(total or 0)


def cell_metrics(session: Session, *, cell_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """The metric values of the given cells: cell id -> {metric: value}."""
    out: dict[int, dict[str, float]] = {}
    if not cell_ids:
        return out
    stmt = select(MetricValue.cell_id, MetricValue.metric, MetricValue.value).where(MetricValue.cell_id.in_(cell_ids))
    for cell_id, metric, value in session.execute(stmt):
        out.setdefault(int(cell_id), {})[metric] = float(value)
    return out


def assessment_state(session: Session, *, assessment_id: str, project_id: str) -> Any:
    """The few columns the status poll needs (no spec or summary JSON), or None (also for another project's)."""
    stmt = select(
        Assessment.id,
        Assessment.status,
        Assessment.created_at,
        Assessment.started_at,
        Assessment.finished_at,
        Assessment.heartbeat_at,
        Assessment.alive_until,
    ).where(Assessment.id == assessment_id, Assessment.project_id == project_id)
    return session.execute(stmt).first()


def unit_progress(session: Session, *, assessment_id: str) -> tuple[dict[str, int], dict[str, int], datetime | None]:
    """Cells per status, trainings per status and the latest change of either (one grouped query).

    A running unit's ``updated_at`` is its worker's heartbeat, not a change: the latest change is taken over
    the other statuses (a unit starting to run shows in the counts).
    """
    stmt = union_all(
        select(literal("cell"), Cell.status, func.count(), func.max(Cell.updated_at))
        .where(Cell.assessment_id == assessment_id)
        .group_by(Cell.status),
        select(literal("training"), Training.status, func.count(), func.max(Training.updated_at))
        .where(Training.assessment_id == assessment_id)
        .group_by(Training.status),
    )
    latest: list[datetime] = []
    counts: dict[str, dict[str, int]] = {"cell": {}, "training": {}}
    for unit, status, n, updated in session.execute(stmt):
        counts[unit][status] = int(n)
        if updated is not None and status != "running":
            latest.append(updated)
    return counts["cell"], counts["training"], max(latest) if latest else None


def error_messages(session: Session, *, assessment_id: str, limit: int) -> tuple[list[str], int]:
    """The first ``limit`` training and cell errors (plan order) and how many there are in all."""
    training_where = (Training.assessment_id == assessment_id, Training.error.is_not(None), Training.error != "")
    cell_where = (
        Cell.assessment_id == assessment_id,
        Cell.status == "error",
        Cell.reason.is_not(None),
        Cell.reason != "",
    )
    trainings = session.execute(
        select(Training.key, Training.error).where(*training_where).order_by(Training.id).limit(limit)
    ).all()
    cells = session.execute(
        select(Cell.key, Cell.reason).where(*cell_where).order_by(Cell.id).limit(max(0, limit - len(trainings)))
    ).all()
    total = int(session.scalar(select(func.count()).select_from(Training).where(*training_where)) or 0)
    total += int(session.scalar(select(func.count()).select_from(Cell).where(*cell_where)) or 0)
    messages = [f"training {k}: {e}" for k, e in trainings] + [f"cell {k}: {r}" for k, r in cells]
    return messages, total


def assessment_estimate(session: Session, *, assessment_id: str) -> dict[str, Any] | None:
    """The cost estimate made at submit (kept in the first ``queued`` event), or None."""
    stmt = (
        select(Event.info)
        .where(Event.assessment_id == assessment_id, Event.kind == "queued")
        .order_by(Event.id)
        .limit(1)
    )
    info = session.scalar(stmt)
    estimate = info.get("estimate") if isinstance(info, dict) else None
    return estimate if isinstance(estimate, dict) else None


def recent_assessment_specs(session: Session, *, project_id: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """(id, resolved spec) of the project's latest ``limit`` assessments, newest first."""
    stmt = (
        select(Assessment.id, Assessment.resolved_spec)
        .where(Assessment.project_id == project_id)
        .order_by(Assessment.created_at.desc())
        .limit(limit)
    )
    return [(str(i), dict(spec or {})) for i, spec in session.execute(stmt)]


def unit_seconds(
    session: Session, *, assessment_ids: Sequence[str], limit: int = 20_000
) -> tuple[list[tuple[str, str, float]], list[tuple[str, float]]]:
    """Measured seconds of the given assessments' units: (risk, attack, seconds) of their ``ok`` cells and
    (key, seconds) of their ``done`` trainings, the latest ``limit`` of each."""
    if not assessment_ids:
        return [], []
    cells = session.execute(
        select(Cell.risk, Cell.attack, Cell.seconds)
        .where(Cell.assessment_id.in_(assessment_ids), Cell.status == "ok", Cell.seconds.is_not(None))
        .order_by(Cell.id.desc())
        .limit(limit)
    )
    trainings = session.execute(
        select(Training.key, Training.seconds)
        .where(Training.assessment_id.in_(assessment_ids), Training.status == "done", Training.seconds.is_not(None))
        .order_by(Training.id.desc())
        .limit(limit)
    )
    return (
        [(r, a, float(s)) for r, a, s in cells if s is not None],
        [(k, float(s)) for k, s in trainings if s is not None],
    )


def metric_rows(session: Session, *, assessment_id: str) -> list[tuple[str, str, float]]:
    """(cell key, metric, value) for every metric value of the assessment."""
    stmt = (
        select(Cell.key, MetricValue.metric, MetricValue.value)
        .join(MetricValue, MetricValue.cell_id == Cell.id)
        .where(Cell.assessment_id == assessment_id)
    )
    return [(k, m, float(v)) for k, m, v in session.execute(stmt)]


def cell_status_counts(session: Session, *, assessment_id: str) -> dict[str, int]:
    """Number of cells per status."""
    stmt = select(Cell.status, func.count()).where(Cell.assessment_id == assessment_id).group_by(Cell.status)
    return {status: int(n) for status, n in session.execute(stmt)}


def training_status_counts(session: Session, *, assessment_id: str) -> dict[str, int]:
    """Number of trainings per status."""
    stmt = (
        select(Training.status, func.count()).where(Training.assessment_id == assessment_id).group_by(Training.status)
    )
    return {status: int(n) for status, n in session.execute(stmt)}


def pending_cell_keys(session: Session, *, assessment_id: str) -> list[str]:
    """Keys of cells not yet in a terminal status."""
    stmt = select(Cell.key).where(Cell.assessment_id == assessment_id, Cell.status.not_in(CELL_DONE)).order_by(Cell.id)
    return list(session.scalars(stmt))


def pending_training_keys(session: Session, *, assessment_id: str) -> list[str]:
    """Keys of trainings not yet done."""
    stmt = select(Training.key).where(Training.assessment_id == assessment_id, Training.status != "done")
    return list(session.scalars(stmt.order_by(Training.id)))
