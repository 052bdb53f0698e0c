"""Assessments: create, read and list them, and their lifecycle (running, cancelled, finalize claim, heartbeat
lease, stalled and stale ones, finished)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.models import (
    ASSESSMENT_ACTIVE,
    CELL_DONE,
    STALLED,
    TRAINING_SETTLED,
    Assessment,
    Cell,
    Event,
    Training,
    utcnow,
)


def create_assessment(
    session: Session,
    *,
    project_id: str,
    name: str,
    spec: dict[str, Any],
    resolved_spec: dict[str, Any],
    training_keys: Sequence[str],
    cells: Sequence[dict[str, Any]],
    estimate: dict[str, Any] | None = None,
) -> Assessment:
    """Add a queued assessment with one pending row per planned training and cell (the caller commits); the
    cost ``estimate`` made at submit is kept in the ``queued`` event's info (see :func:`assessment_estimate`)."""
    assessment = Assessment(
        project_id=project_id,
        name=name,
        spec=spec,
        resolved_spec=resolved_spec,
        n_trainings=len(training_keys),
        n_cells=len(cells),
    )
    session.add(assessment)
    session.flush()
    session.add_all(Training(assessment_id=assessment.id, key=key) for key in training_keys)
    session.add_all(
        Cell(
            assessment_id=assessment.id,
            key=c["key"],
            row=c["row"],
            risk=c["risk"],
            attack=c["attack"],
            seed=int(c["seed"]),
        )
        for c in cells
    )
    info = {"estimate": estimate} if estimate else {}
    session.add(Event(assessment_id=assessment.id, kind="queued", message="assessment queued", info=info))
    session.flush()
    return assessment


def get_assessment(session: Session, *, assessment_id: str, project_id: str | None = None) -> Assessment | None:
    """The assessment, scoped to ``project_id`` when given (the worker reads it unscoped)."""
    stmt = select(Assessment).where(Assessment.id == assessment_id)
    if project_id is not None:
        stmt = stmt.where(Assessment.project_id == project_id)
    return session.scalar(stmt)


def list_assessments(
    session: Session, *, project_id: str, limit: int = 100, offset: int = 0, status: str | None = None
) -> tuple[list[Assessment], int]:
    """A page of the project's assessments (newest first) and their total count."""
    where: list[Any] = [Assessment.project_id == project_id]
    lease_over = Assessment.alive_until.is_not(None) & (Assessment.alive_until < utcnow())
    if status == STALLED:  # derived, never stored: see Assessment.public_status
        where += [Assessment.status.in_(("running", "finalizing")), lease_over]
    elif status in ("running", "finalizing"):
        where += [Assessment.status == status, ~lease_over]
    elif status:
        where.append(Assessment.status == status)
    stmt = select(Assessment).where(*where).order_by(Assessment.created_at.desc()).limit(limit).offset(offset)
    total = session.scalar(select(func.count()).select_from(Assessment).where(*where))
    return list(session.scalars(stmt)), int(total or 0)


def cancel_assessment(session: Session, *, assessment_id: str, project_id: str) -> bool:
    """Mark an active assessment cancelled; False when it is already finished (or not the project's)."""
    result = session.execute(
        update(Assessment)
        .where(
            Assessment.id == assessment_id,
            Assessment.project_id == project_id,
            Assessment.status.in_(ASSESSMENT_ACTIVE),
        )
        .values(status="cancelled", finished_at=utcnow(), exit_code=2, error="cancelled by the user")
    )
    if result.rowcount:  # type: ignore[attr-defined]
        session.add(Event(assessment_id=assessment_id, kind="cancelled", message="cancelled by the user"))
        cancel_remaining(session, assessment_id=assessment_id)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel_remaining(session: Session, *, assessment_id: str) -> None:
    """Mark every training and cell that has not finished (pending or running) ``cancelled``.

    A worker running one of them stops it within a second (see ``worker.supervisor``); one that finishes in
    that second may still write its result over ``cancelled``, which is a true result, not a lost one.
    """
    now = utcnow()
    session.execute(
        update(Cell)
        .where(Cell.assessment_id == assessment_id, Cell.status.not_in(CELL_DONE))
        .values(status="cancelled", reason="cancelled by the user", updated_at=now)
    )
    session.execute(
        update(Training)
        .where(Training.assessment_id == assessment_id, Training.status.not_in(TRAINING_SETTLED))
        .values(status="cancelled", updated_at=now)
    )


def mark_running(session: Session, *, assessment_id: str) -> bool:
    """queued -> running (sets started_at); True when the assessment is active (running or just started)."""
    now = utcnow()
    session.execute(
        update(Assessment)
        .where(Assessment.id == assessment_id, Assessment.status == "queued")
        .values(status="running", started_at=now, heartbeat_at=now)
    )
    status = session.scalar(select(Assessment.status).where(Assessment.id == assessment_id))
    return status in ("running", "finalizing")


def touch_assessment(session: Session, *, assessment_id: str) -> str | None:
    """Refresh the heartbeat; returns the current status (None when the assessment is gone)."""
    session.execute(update(Assessment).where(Assessment.id == assessment_id).values(heartbeat_at=utcnow()))
    return session.scalar(select(Assessment.status).where(Assessment.id == assessment_id))


def claim_finalize(session: Session, *, assessment_id: str, stale_before: datetime | None = None) -> bool:
    """running -> finalizing, atomically: exactly one caller wins (or re-claims a stale finalizing one)."""
    cond = Assessment.status == "running"
    if stale_before is not None:
        cond = cond | ((Assessment.status == "finalizing") & (Assessment.heartbeat_at < stale_before))
    result = session.execute(
        update(Assessment)
        .where(Assessment.id == assessment_id, cond)
        .values(status="finalizing", heartbeat_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_finalize(session: Session, *, assessment_id: str) -> None:
    """finalizing -> running, so that a retried finalize can claim it again."""
    session.execute(
        update(Assessment)
        .where(Assessment.id == assessment_id, Assessment.status == "finalizing")
        .values(status="running")
    )


def finish_assessment(
    session: Session,
    *,
    assessment_id: str,
    status: str,
    exit_code: int | None,
    error: str | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Record the end of an assessment (not over a cancellation)."""
    values: dict[str, Any] = {"status": status, "exit_code": exit_code, "error": error, "finished_at": utcnow()}
    if summary is not None:
        values["summary"] = summary
    session.execute(
        update(Assessment).where(Assessment.id == assessment_id, Assessment.status != "cancelled").values(**values)
    )
    session.add(Event(assessment_id=assessment_id, kind=status, message=error or f"assessment {status}"))


def renew_lease(
    session: Session,
    *,
    assessment_id: str,
    alive_until: datetime,
    training_key: str | None = None,
    cell_key: str | None = None,
) -> str | None:
    """A running job's heartbeat: renew the assessment's lease and the running row's ``updated_at``.

    Returns the assessment's status (None when it is gone), which tells the job whether to go on.
    """
    now = utcnow()
    session.execute(
        update(Assessment)
        .where(Assessment.id == assessment_id, Assessment.status.in_(("running", "finalizing")))
        .values(heartbeat_at=now, alive_until=alive_until)
    )
    if training_key is not None:
        session.execute(
            update(Training)
            .where(Training.assessment_id == assessment_id, Training.key == training_key, Training.status == "running")
            .values(updated_at=now)
        )
    if cell_key is not None:
        session.execute(
            update(Cell)
            .where(Cell.assessment_id == assessment_id, Cell.key == cell_key, Cell.status == "running")
            .values(updated_at=now)
        )
    return session.scalar(select(Assessment.status).where(Assessment.id == assessment_id))


def end_lease(session: Session, *, assessment_id: str) -> None:
    """The job ended (whichever way): no lease until the next job of the assessment starts."""
    session.execute(update(Assessment).where(Assessment.id == assessment_id).values(alive_until=None))


def claim_cell_dispatch(session: Session, *, assessment_id: str, reset: bool = False) -> bool:
    """Claim the queuing of the cells, atomically: True for exactly one caller once every training has
    settled (done, error or cancelled) and the assessment is running. ``reset=True`` only releases the claim
    (a resumed assessment whose trainings must run again) and returns False."""
    if reset:
        session.execute(update(Assessment).where(Assessment.id == assessment_id).values(cells_dispatched_at=None))
        return False
    unsettled = (
        select(Training.id)
        .where(Training.assessment_id == assessment_id, Training.status.not_in(TRAINING_SETTLED))
        .exists()
    )
    result = session.execute(
        update(Assessment)
        .where(
            Assessment.id == assessment_id,
            Assessment.status == "running",
            Assessment.cells_dispatched_at.is_(None),
            ~unsettled,
        )
        .values(cells_dispatched_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stalled_assessments(session: Session, *, stale_before: datetime) -> list[str]:
    """Ids of active assessments whose worker died mid-job: the lease ran out, or a running training or
    cell has had no heartbeat since ``stale_before`` (its worker died while another one renews the lease)."""
    now = utcnow()
    dead_cell = select(Cell.assessment_id).where(Cell.status == "running", Cell.updated_at < stale_before)
    dead_training = select(Training.assessment_id).where(
        Training.status == "running", Training.updated_at < stale_before
    )
    stmt = select(Assessment.id).where(
        Assessment.status.in_(("running", "finalizing")),
        (Assessment.alive_until.is_not(None) & (Assessment.alive_until < now))
        | Assessment.id.in_(dead_cell)
        | Assessment.id.in_(dead_training),
    )
    return list(session.scalars(stmt))


def resume_stalled(session: Session, *, assessment_id: str, stale_before: datetime, reason: str) -> None:
    """Make a stalled assessment resumable: its dead running rows go back to ``pending``, a dead
    finalizer's claim is released, the lease is cleared; the caller then queues the assessment again."""
    session.execute(
        update(Cell)
        .where(Cell.assessment_id == assessment_id, Cell.status == "running", Cell.updated_at < stale_before)
        .values(status="pending", updated_at=utcnow())
    )
    session.execute(
        update(Training)
        .where(
            Training.assessment_id == assessment_id, Training.status == "running", Training.updated_at < stale_before
        )
        .values(status="pending", updated_at=utcnow())
    )
    row = session.get(Assessment, assessment_id)
    if row is not None and row.status == "finalizing" and row.alive_until is not None and row.alive_until < utcnow():
        release_finalize(session, assessment_id=assessment_id)
    session.execute(update(Assessment).where(Assessment.id == assessment_id).values(alive_until=None))
    session.add(Event(assessment_id=assessment_id, kind="resumed", message=reason))


def stale_assessments(session: Session, *, stale_before: datetime) -> list[str]:
    """Ids of active assessments without a heartbeat since ``stale_before`` (their tasks were lost)."""
    stmt = select(Assessment.id).where(Assessment.status.in_(ASSESSMENT_ACTIVE), Assessment.heartbeat_at < stale_before)
    return list(session.scalars(stmt))
