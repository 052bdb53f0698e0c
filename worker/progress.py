"""Progress of a job, written to SQL, and the errors a job tells apart.

Progress goes to the ``events`` table through :class:`SqlProgress`, so the API never asks the broker. Each
write also reads the assessment's status: a cancelled assessment stops a running training or attack at its
next progress report (:class:`AssessmentCancelledError`).
"""

from __future__ import annotations

import time

from sqlalchemy.exc import InterfaceError, OperationalError

from amulet.exceptions import RunCancelledError
from amulet.progress import Progress, ProgressEvent
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.models import ASSESSMENT_ACTIVE

__all__ = ["TRANSIENT_ERRORS", "AssessmentCancelledError", "SqlProgress"]

#: Errors worth a retry with backoff (the database or the broker blinked), as opposed to engine errors.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class AssessmentCancelledError(RunCancelledError):
    """The assessment was cancelled (or deleted) while a task ran; the engine lets it through (it is no
    cell's error) and the task marks what is left ``cancelled``."""


class SqlProgress(Progress):
    """Writes progress events to SQL: every start/finish, advances at most every ``interval`` seconds.

    Each write also reads the assessment's status and raises :class:`AssessmentCancelledError` once it is
    no longer active, which stops a running training or attack at its next progress report.
    """

    def __init__(self, settings: Settings, assessment_id: str, *, prefix: str = "", interval: float = 2.0) -> None:
        super().__init__()
        self.settings = settings
        self.assessment_id = assessment_id
        self.prefix = prefix
        self.interval = interval
        self._last: dict[str, float] = {}

    def emit(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.kind == "advance" and now - self._last.get(event.key, 0.0) < self.interval:
            return
        self._last[event.key] = now
        info = {k: v for k, v in event.info.items() if isinstance(v, (int, float, str, bool))}
        if event.eta is not None:
            info["eta"] = round(event.eta, 1)
        with session_scope(self.settings) as session:
            crud.add_event(
                session,
                assessment_id=self.assessment_id,
                kind=event.kind,
                key=f"{self.prefix}{event.key}",
                message=event.description,
                completed=event.completed,
                total=event.total,
                info=info,
            )
            status = crud.touch_assessment(session, assessment_id=self.assessment_id)
        if status not in ASSESSMENT_ACTIVE:
            raise AssessmentCancelledError(self.assessment_id)
