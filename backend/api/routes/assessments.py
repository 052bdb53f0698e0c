"""``/assessments``: submit, list, progress, cancel, results and reports."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from backend import crud
from backend.api.deps import CurrentToken, LimitQuery, OffsetQuery, SessionDep, SettingsDep
from backend.core.queue import enqueue_assessment
from backend.intake import IntakeError
from backend.models import CELL_DONE, Assessment, utcnow
from backend.planning import plan_submission
from backend.schemas import (
    AssessmentCreate,
    AssessmentDetail,
    AssessmentPublic,
    AssessmentsPublic,
    CellPublic,
    EventPublic,
    ProgressPublic,
    ReportPublic,
    TrainingPublic,
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


def _get_or_404(session: SessionDep, project_id: str, assessment_id: str) -> Assessment:
    row = crud.get_assessment(session, assessment_id=assessment_id, project_id=project_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Assessment not found.")
    return row


@router.post("", response_model=AssessmentPublic, status_code=status.HTTP_202_ACCEPTED)
def submit_assessment(
    body: AssessmentCreate, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> AssessmentPublic:
    """Validate the spec (422 naming the field), store the plan, commit, then queue it: 202 with the id."""
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
    )
    session.commit()
    try:
        enqueue_assessment(settings, row.id)
    except Exception as exc:  # the row is committed; a starting worker picks stale ones up
        logger.warning("could not queue assessment %s: %s", row.id, exc)
        crud.add_event(session, assessment_id=row.id, kind="warning", message=f"broker unavailable: {exc}")
        session.commit()
    return AssessmentPublic.model_validate(row)


@router.get("", response_model=AssessmentsPublic)
def list_assessments(
    session: SessionDep,
    token: CurrentToken,
    limit: LimitQuery = 100,
    offset: OffsetQuery = 0,
    status: str | None = None,
) -> AssessmentsPublic:
    """The project's assessments, newest first (optionally one status)."""
    rows, count = crud.list_assessments(session, project_id=token.project_id, limit=limit, offset=offset, status=status)
    return AssessmentsPublic(data=[AssessmentPublic.model_validate(r) for r in rows], count=count)


def _eta(row: Assessment, fraction: float) -> float | None:
    if row.status not in ("running", "finalizing") or row.started_at is None or fraction <= 0:
        return 0.0 if row.finished_at is not None else None
    started: datetime = row.started_at
    elapsed = (utcnow() - started).total_seconds()
    return max(0.0, elapsed / fraction * (1.0 - fraction))


@router.get("/{assessment_id}", response_model=AssessmentDetail)
def read_assessment(assessment_id: str, session: SessionDep, token: CurrentToken) -> AssessmentDetail:
    """Status, per-cell progress and metrics, ETA, errors, recent events and reports, from SQL only."""
    row = _get_or_404(session, token.project_id, assessment_id)
    trainings = crud.list_trainings(session, assessment_id=row.id)
    cells = crud.list_cells(session, assessment_id=row.id)
    metrics: dict[str, dict[str, float]] = {}
    for key, metric, value in crud.metric_rows(session, assessment_id=row.id):
        metrics.setdefault(key, {})[metric] = value
    by_status: dict[str, int] = {}
    for cell in cells:
        by_status[cell.status] = by_status.get(cell.status, 0) + 1
    cells_done = sum(n for s, n in by_status.items() if s in CELL_DONE)
    trainings_done = sum(1 for t in trainings if t.status in ("done", "error"))
    units = len(trainings) + len(cells)
    fraction = (cells_done + trainings_done) / units if units else 1.0
    errors = [f"training {t.key}: {t.error}" for t in trainings if t.error]
    errors += [f"cell {c.key}: {c.reason}" for c in cells if c.status == "error" and c.reason]
    if row.error:
        errors.insert(0, row.error)
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
        progress=ProgressPublic(
            trainings_done=trainings_done,
            trainings_total=len(trainings),
            cells_done=cells_done,
            cells_total=len(cells),
            cells_by_status=by_status,
            fraction=round(fraction, 4),
            eta_seconds=_eta(row, fraction),
        ),
        trainings=[TrainingPublic.model_validate(t) for t in trainings],
        cells=[CellPublic.model_validate(c).model_copy(update={"metrics": metrics.get(c.key, {})}) for c in cells],
        errors=errors,
        events=[EventPublic.model_validate(e) for e in crud.list_events(session, assessment_id=row.id, limit=20)],
        reports=reports,
    )


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


@router.get("/{assessment_id}/results")
def read_results(assessment_id: str, session: SessionDep, token: CurrentToken) -> FileResponse:
    """The results document (the engine's AssessmentResults JSON, versioned schema)."""
    row = _get_or_404(session, token.project_id, assessment_id)
    return FileResponse(_report_file(session, row, "json"), media_type="application/json", headers=REPORT_HEADERS)


@router.get("/{assessment_id}/report.{fmt}")
def read_report(
    assessment_id: str, fmt: Literal["html", "pdf", "json", "xml"], session: SessionDep, token: CurrentToken
) -> FileResponse:
    """A rendered report: html, pdf, json or xml (JUnit)."""
    row = _get_or_404(session, token.project_id, assessment_id)
    path = _report_file(session, row, REPORT_FORMATS[fmt])
    return FileResponse(path, media_type=_MEDIA[fmt], filename=f"amulet-{row.id}.{fmt}", headers=REPORT_HEADERS)
