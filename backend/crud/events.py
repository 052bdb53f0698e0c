"""Progress events and rendered reports of an assessment."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.crud._upsert import upsert as _upsert
from backend.models import (
    Assessment,
    Event,
    Report,
    utcnow,
)


def add_event(
    session: Session,
    *,
    assessment_id: str,
    kind: str,
    key: str = "",
    message: str = "",
    completed: int | None = None,
    total: int | None = None,
    info: dict[str, Any] | None = None,
) -> None:
    """Append a progress event and refresh the assessment's heartbeat."""
    session.add(
        Event(
            assessment_id=assessment_id,
            kind=kind,
            key=key,
            message=message,
            completed=completed,
            total=total,
            info=info or {},
        )
    )
    session.execute(update(Assessment).where(Assessment.id == assessment_id).values(heartbeat_at=utcnow()))


def list_events(session: Session, *, assessment_id: str, limit: int = 50) -> list[Event]:
    """The latest ``limit`` events, oldest first."""
    stmt = select(Event).where(Event.assessment_id == assessment_id).order_by(Event.id.desc()).limit(limit)
    return list(reversed(list(session.scalars(stmt))))


def record_report(
    session: Session, *, assessment_id: str, format: str, path: str, sha256: str, size_bytes: int
) -> None:
    """Register a rendered report file (upsert by assessment and format)."""
    _upsert(
        session,
        Report.__table__,  # type: ignore[arg-type]
        {
            "assessment_id": assessment_id,
            "format": format,
            "path": path,
            "sha256": sha256,
            "size_bytes": size_bytes,
            "created_at": utcnow(),
        },
        ("assessment_id", "format"),
        ("path", "sha256", "size_bytes", "created_at"),
    )


def list_reports(session: Session, *, assessment_id: str) -> list[Report]:
    """The assessment's rendered reports."""
    return list(session.scalars(select(Report).where(Report.assessment_id == assessment_id).order_by(Report.format)))
