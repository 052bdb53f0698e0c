"""``/assessments``: submit (with a cost estimate), list, progress, the cheap status poll, cancel, the cells,
trainings and results page by page, and the report downloads.

No answer grows with the assessment: the detail carries counts, the first errors and the latest events;
cells, trainings and cell results are listed at their own endpoints, ``limit``/``offset`` bounded like
every list. ``GET /assessments/{id}/status`` is what pollers call: a few grouped queries, a weak ``ETag``
over everything it shows but the countdown, and ``304 Not Modified`` for a matching ``If-None-Match``.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.responses import FileResponse

from backend import crud
from backend.api.deps import CurrentToken, LimitQuery, OffsetQuery, SessionDep, SettingsDep
from backend.core.queue import enqueue_assessment
from backend.intake import IntakeError
from backend.models import ASSESSMENT_STATUSES, CELL_DONE, CELL_STATUSES, STALLED, Assessment, public_status, utcnow
from backend.planning import plan_submission
from backend.schemas import (
    AssessmentCreate,
    AssessmentCreated,
    AssessmentDetail,
    AssessmentPublic,
    AssessmentsPublic,
    AssessmentStatusPublic,
    CellPublic,
    CellsPublic,
    EstimatePublic,
    EventPublic,
    ProgressPublic,
    ReportPublic,
    ResultsPublic,
    TrainingPublic,
    TrainingsPublic,
)

router = APIRouter(prefix="/assessments", tags=["assessments"])
logger = logging.getLogger(__name__)

#: URL suffix -> stored report format.
REPORT_FORMATS = {"html": "html", "pdf": "pdf", "json": "json", "xml": "junit"}
_MEDIA = {"html": "text/html", "pdf": "application/pdf", "json": "application/json", "xml": "application/xml"}
#: Headers of every report download. The HTML report is self-contained (inline script and styles, the heatmap
#: as a data: image), so it may run its own inline code but load nothing and connect nowhere; no browser may
#: sniff a download into another type.
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}
#: Most errors the detail lists (``errors_total`` counts them all; the cells endpoint pages through them).
MAX_DETAIL_ERRORS = 50
#: Training statuses that count as done for progress.
_TRAINING_DONE = ("done", "error", "cancelled")
#: A poller may revalidate the status at every poll, and no shared cache may keep it.
_POLL_CACHE_CONTROL = "private, no-cache"


def _get_or_404(session: SessionDep, project_id: str, assessment_id: str) -> Assessment:
    row = crud.get_assessment(session, assessment_id=assessment_id, project_id=project_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Assessment not found.")
    return row


def _state_or_404(session: SessionDep, project_id: str, assessment_id: str) -> Any:
    row = crud.assessment_state(session, assessment_id=assessment_id, project_id=project_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Assessment not found.")
    return row


def _check_status_filter(value: str | None, known: tuple[str, ...]) -> None:
    """Refuse a ``status`` filter no row can have: it would match nothing, and an empty page reads as an answer."""
    if value is not None and value not in known:
        message = f"Unknown status {value!r}: use one of {', '.join(known)}, or leave it out."
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, {"field": "status", "message": message})


@router.post("", response_model=AssessmentCreated, status_code=status.HTTP_202_ACCEPTED)
def submit_assessment(
    body: AssessmentCreate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> AssessmentCreated:
    """Validate the spec (422 naming the field, or the limit and its setting), store the plan, commit, then
    queue it: 202 with the id and the estimate of its cost (cells, trainings, seconds and how they were
    estimated)."""
    try:
        planned = plan_submission(
            session, project_id=token.project_id, spec=body.spec, name=body.name, settings=settings
        )
    except IntakeError as exc:
        raise HTTPException(exc.status_code, {"field": exc.field, "message": exc.message}) from exc
    row = crud.create_assessment(
        session,
        project_id=token.project_id,
        name=planned.name,
        spec=body.spec,
        resolved_spec=planned.resolved_spec,
        training_keys=planned.training_keys,
        cells=planned.cells,
        estimate=planned.estimate,
    )
    session.commit()
    try:
        enqueue_assessment(settings, row.id)
    except Exception as exc:  # the row is committed; a starting worker picks stale ones up
        logger.warning("could not queue assessment %s: %s", row.id, exc)
        crud.add_event(session, assessment_id=row.id, kind="warning", message=f"broker unavailable: {exc}")
        session.commit()
    return AssessmentCreated(
        **AssessmentPublic.model_validate(row).model_dump(), estimate=EstimatePublic(**planned.estimate)
    )


@router.get("", response_model=AssessmentsPublic)
def list_assessments(
    session: SessionDep,
    token: CurrentToken,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
    status: str | None = None,
) -> AssessmentsPublic:
    """The project's assessments, newest first (optionally one status)."""
    _check_status_filter(status, (*ASSESSMENT_STATUSES, STALLED))
    rows, count = crud.list_assessments(session, project_id=token.project_id, limit=limit, offset=offset, status=status)
    return AssessmentsPublic(data=[AssessmentPublic.model_validate(r) for r in rows], count=count)


def _progress(
    session: SessionDep, row: Any, estimate: dict[str, Any] | None = None, *, estimate_loaded: bool = False
) -> tuple[ProgressPublic, datetime | None, datetime]:
    """Progress counts, the expected finish (``eta_at``) and the latest change, from grouped counts only.

    ``eta_at`` moves only when something changes: before the first unit finishes it is the start plus the
    submit-time estimate; afterwards the pace measured up to the latest finished unit, extrapolated. The
    seconds left are ``eta_at`` minus now (the estimate itself while queued).
    """
    by_status, trainings, latest = crud.unit_progress(session, assessment_id=row.id)
    cells_total, trainings_total = sum(by_status.values()), sum(trainings.values())
    cells_done = sum(n for s, n in by_status.items() if s in CELL_DONE)
    trainings_done = sum(n for s, n in trainings.items() if s in _TRAINING_DONE)
    units = cells_total + trainings_total
    fraction = (cells_done + trainings_done) / units if units else 1.0
    updated_at = max(t for t in (row.created_at, row.started_at, row.finished_at, latest) if t is not None)
    eta_at: datetime | None = None
    eta_seconds: float | None = None
    now = utcnow()
    if row.status not in ("queued", "running", "finalizing"):
        eta_at, eta_seconds = row.finished_at, (0.0 if row.finished_at is not None else None)
    else:
        if fraction <= 0 or row.started_at is None:
            if not estimate_loaded:
                estimate = crud.assessment_estimate(session, assessment_id=row.id)
            planned = float(estimate["seconds"]) if estimate and "seconds" in estimate else None
            if planned is not None and row.started_at is None:
                eta_seconds = planned  # queued: the whole estimate is left (the wait in the queue is not known)
            elif planned is not None:
                eta_at = row.started_at + timedelta(seconds=planned)
        elif latest is not None and latest > row.started_at:
            eta_at = row.started_at + (latest - row.started_at) / fraction
        if eta_at is not None:
            left = (eta_at - now).total_seconds()
            eta_seconds = left if left > 0 else None  # overdue: no basis left for a number
    progress = ProgressPublic(
        trainings_done=trainings_done,
        trainings_total=trainings_total,
        cells_done=cells_done,
        cells_total=cells_total,
        cells_by_status=by_status,
        fraction=round(fraction, 4),
        eta_seconds=round(eta_seconds, 1) if eta_seconds is not None else None,
    )
    return progress, eta_at, updated_at


def _etag(body: AssessmentStatusPublic) -> str:
    """A weak validator over everything the status shows except the countdown (``eta_seconds``)."""
    stable = body.model_dump(mode="json")
    stable["progress"].pop("eta_seconds", None)
    digest = hashlib.sha256(repr(sorted(_flatten(stable))).encode()).hexdigest()[:32]
    return f'W/"{digest}"'


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}.{k}")]
    return [(prefix, repr(value))]


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


@router.get(
    "/{assessment_id}/status",
    response_model=AssessmentStatusPublic,
    responses={304: {"description": "Not modified: the status is the one the If-None-Match ETag names."}},
)
def read_status(
    assessment_id: str,
    session: SessionDep,
    token: CurrentToken,
    response: Response,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
) -> AssessmentStatusPublic | Response:
    """The cheap poll: status, progress counts, ETA, the latest change and the current step, with an ETag.

    Send the last answer's ``ETag`` as ``If-None-Match``: until something changes the answer is
    ``304 Not Modified`` with no body (``eta_seconds`` is then ``eta_at`` minus now).
    """
    row = _state_or_404(session, token.project_id, assessment_id)
    progress, eta_at, updated_at = _progress(session, row)
    latest = crud.list_events(session, assessment_id=row.id, limit=1)
    body = AssessmentStatusPublic(
        id=row.id,
        status=public_status(row.status, row.alive_until),
        progress=progress,
        eta_at=eta_at,
        updated_at=updated_at,
        step=EventPublic.model_validate(latest[0]) if latest else None,
    )
    etag = _etag(body)
    headers = {"ETag": etag, "Cache-Control": _POLL_CACHE_CONTROL}
    if _matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    return body


@router.get("/{assessment_id}", response_model=AssessmentDetail)
def read_assessment(assessment_id: str, session: SessionDep, token: CurrentToken) -> AssessmentDetail:
    """Status, progress counts, the estimate, ETA, the first errors, recent events and reports, from SQL only.

    Bounded whatever the assessment's size: the cells, trainings and results are at
    ``/assessments/{id}/cells``, ``/trainings`` and ``/results``, page by page.
    """
    row = _get_or_404(session, token.project_id, assessment_id)
    estimate = crud.assessment_estimate(session, assessment_id=row.id)
    progress, _, updated_at = _progress(session, row, estimate, estimate_loaded=True)
    errors, errors_total = crud.error_messages(session, assessment_id=row.id, limit=MAX_DETAIL_ERRORS)
    if row.error:
        errors.insert(0, row.error)
        errors_total += 1
    reports = [
        ReportPublic(
            format=r.format,
            sha256=r.sha256,
            size_bytes=r.size_bytes,
            url=f"/assessments/{row.id}/report.{'xml' if r.format == 'junit' else r.format}",
        )
        for r in crud.list_reports(session, assessment_id=row.id)
        if r.format in REPORT_FORMATS.values()
    ]
    return AssessmentDetail(
        **AssessmentPublic.model_validate(row).model_dump(),
        spec=row.spec,
        summary=row.summary or {},
        progress=progress,
        estimate=EstimatePublic(**estimate) if estimate else None,
        updated_at=updated_at,
        errors=errors[:MAX_DETAIL_ERRORS],
        errors_total=errors_total,
        events=[EventPublic.model_validate(e) for e in crud.list_events(session, assessment_id=row.id, limit=20)],
        reports=reports,
    )


@router.get("/{assessment_id}/cells", response_model=CellsPublic)
def list_cells(
    assessment_id: str,
    session: SessionDep,
    token: CurrentToken,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
    status: Annotated[str | None, Query(max_length=20, description="Only cells of this status.")] = None,
) -> CellsPublic:
    """A page of the assessment's cells (plan order: row, risk, seed) with their metrics, and the total count."""
    _check_status_filter(status, CELL_STATUSES)
    row = _state_or_404(session, token.project_id, assessment_id)
    cells, count = crud.page_cells(session, assessment_id=row.id, limit=limit, offset=offset, status=status)
    metrics = crud.cell_metrics(session, cell_ids=[c.id for c in cells])
    data = [CellPublic.model_validate(c).model_copy(update={"metrics": metrics.get(c.id, {})}) for c in cells]
    return CellsPublic(data=data, count=count)


@router.get("/{assessment_id}/trainings", response_model=TrainingsPublic)
def list_trainings(
    assessment_id: str, session: SessionDep, token: CurrentToken, limit: LimitQuery = 100, offset: OffsetQuery = 0
) -> TrainingsPublic:
    """A page of the assessment's trainings (plan order) and their total count."""
    row = _state_or_404(session, token.project_id, assessment_id)
    rows, count = crud.page_trainings(session, assessment_id=row.id, limit=limit, offset=offset)
    return TrainingsPublic(data=[TrainingPublic.model_validate(t) for t in rows], count=count)


@router.post("/{assessment_id}/cancel", response_model=AssessmentPublic)
def cancel_assessment(assessment_id: str, session: SessionDep, token: CurrentToken) -> AssessmentPublic:
    """Cancel a queued or running assessment (its tasks stop at their next check); 409 once finished."""
    row = _get_or_404(session, token.project_id, assessment_id)
    if not crud.cancel_assessment(session, assessment_id=row.id, project_id=token.project_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"The assessment is already {row.status}.")
    session.commit()
    session.refresh(row)
    return AssessmentPublic.model_validate(row)


@router.delete("/{assessment_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_assessment(assessment_id: str, session: SessionDep, token: CurrentToken) -> None:
    """Delete a finished or cancelled assessment with its cells, events and reports; 409 while it is active."""
    row = _get_or_404(session, token.project_id, assessment_id)
    if row.status in ("queued", "running", "finalizing"):
        raise HTTPException(status.HTTP_409_CONFLICT, f"The assessment is {row.status}; cancel it before deleting it.")
    for report in crud.list_reports(session, assessment_id=row.id):
        Path(report.path).unlink(missing_ok=True)
    session.delete(row)  # cells, trainings, metric values, events and reports go with it (ON DELETE CASCADE)
    session.commit()


def _report_file(session: SessionDep, row: Assessment, fmt: str) -> Path:
    for report in crud.list_reports(session, assessment_id=row.id):
        if report.format == fmt and Path(report.path).is_file():
            return Path(report.path)
    if row.status in ("queued", "running", "finalizing"):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"The assessment is {row.status}; reports exist once it succeeds."
        )
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"No {fmt} report for this assessment (status {row.status}).")


@router.get("/{assessment_id}/results", response_model=ResultsPublic)
def read_results(
    assessment_id: str, session: SessionDep, token: CurrentToken, limit: LimitQuery = 100, offset: OffsetQuery = 0
) -> ResultsPublic:
    """A page of the cell results (the engine's ``CellResult`` of each finished cell, plan order) and their
    count; the whole results document (matrix, checks, findings) is ``GET /assessments/{id}/report.json``."""
    row = _state_or_404(session, token.project_id, assessment_id)
    data, count = crud.page_results(session, assessment_id=row.id, limit=limit, offset=offset)
    return ResultsPublic(status=row.status, data=data, count=count)


@router.get("/{assessment_id}/report.{fmt}")
def read_report(
    assessment_id: str, fmt: Literal["html", "pdf", "json", "xml"], session: SessionDep, token: CurrentToken
) -> FileResponse:
    """A rendered report: html, pdf, json or xml (JUnit)."""
    row = _get_or_404(session, token.project_id, assessment_id)
    path = _report_file(session, row, REPORT_FORMATS[fmt])
    return FileResponse(path, media_type=_MEDIA[fmt], filename=f"amulet-{row.id}.{fmt}", headers=REPORT_HEADERS)
