"""Every database read and write of the service, as keyword-only functions over a session.

Routes and worker tasks call these; none of them commits except where the docstring says so (the caller
owns the transaction). Reads that take a ``project_id`` are scoped to it: another project's id is simply
not found. Cell and metric writes are upserts on their unique keys, so a redelivered task never adds a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, literal, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.core.security import generate_token, hash_token, token_display_prefix
from backend.models import (
    ASSESSMENT_ACTIVE,
    CELL_DONE,
    STALLED,
    TRAINING_SETTLED,
    ApiToken,
    Assessment,
    Cell,
    Dataset,
    Event,
    MetricValue,
    Model,
    Project,
    Report,
    Training,
    utcnow,
)

__all__ = [
    "add_event",
    "assessment_estimate",
    "assessment_state",
    "cancel_assessment",
    "cancel_remaining",
    "claim_cell_dispatch",
    "end_lease",
    "renew_lease",
    "resume_stalled",
    "stalled_assessments",
    "cell_metrics",
    "cell_status_counts",
    "claim_finalize",
    "create_assessment",
    "create_dataset",
    "create_model",
    "create_project",
    "create_token",
    "error_messages",
    "finish_assessment",
    "get_assessment",
    "get_dataset",
    "get_model",
    "get_model_by_file",
    "get_project_by_name",
    "get_token",
    "get_token_by_id",
    "list_assessments",
    "list_cells",
    "list_datasets",
    "list_events",
    "list_models",
    "list_reports",
    "list_tokens",
    "list_trainings",
    "mark_running",
    "may_manage",
    "metric_rows",
    "page_cells",
    "page_results",
    "page_trainings",
    "pending_cell_keys",
    "pending_training_keys",
    "recent_assessment_specs",
    "record_report",
    "release_finalize",
    "revoke_token",
    "stale_assessments",
    "touch_assessment",
    "training_status_counts",
    "unit_progress",
    "unit_seconds",
    "upsert_cell",
    "upsert_training",
]


def _upsert(
    session: Session, table: Table, values: dict[str, Any], keys: Sequence[str], update_cols: Iterable[str]
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update_cols})
    session.execute(stmt)


# ---------------------------------------------------------------------------------------------- projects, tokens
def create_project(session: Session, *, name: str) -> Project:
    """Add a project named ``name`` (unique)."""
    project = Project(name=name)
    session.add(project)
    session.flush()
    return project


def get_project_by_name(session: Session, *, name: str) -> Project | None:
    """The project called ``name``, if any."""
    return session.scalar(select(Project).where(Project.name == name))


def create_token(
    session: Session,
    *,
    project_id: str,
    name: str = "",
    is_admin: bool = False,
    scope: str = "submit",
    minted_by: str | None = None,
) -> tuple[ApiToken, str]:
    """Add a token to ``project_id``; returns the row and the plaintext (shown once, stored hashed).

    ``minted_by`` is the id of the token that asked for it: revoking that one revokes this one too.
    """
    plaintext = generate_token()
    token = ApiToken(
        project_id=project_id,
        name=name,
        token_hash=hash_token(plaintext),
        prefix=token_display_prefix(plaintext),
        is_admin=is_admin,
        scope=scope,
        minted_by=minted_by,
    )
    session.add(token)
    session.flush()
    return token, plaintext


def get_token(session: Session, *, plaintext: str) -> ApiToken | None:
    """The live token whose hash matches ``plaintext``: neither it nor any token up its minting chain revoked.

    Revoking a token also revokes what it minted (:func:`revoke_token`); checking the chain here as well
    closes the race of a token minted by one whose revocation commits meanwhile.
    """
    token = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
    )
    if token is None or token.minted_by is None:
        return token
    chain = select(ApiToken.id, ApiToken.minted_by, ApiToken.revoked_at).where(ApiToken.id == token.minted_by)
    up = chain.cte("minters", recursive=True)
    up = up.union_all(
        select(ApiToken.id, ApiToken.minted_by, ApiToken.revoked_at).join(up, ApiToken.id == up.c.minted_by)
    )
    revoked_minter = session.scalar(select(up.c.id).where(up.c.revoked_at.is_not(None)).limit(1))
    return None if revoked_minter is not None else token


def get_token_by_id(session: Session, *, token_id: str) -> ApiToken | None:
    """The token ``token_id``, live or revoked (callers check who may see it)."""
    return session.get(ApiToken, token_id)


def _minted_from(root_id: str) -> Any:
    """A recursive CTE of ``root_id`` and every token it minted, transitively (one ``id`` column)."""
    tree = select(ApiToken.id).where(ApiToken.id == root_id).cte("minted_tree", recursive=True)
    return tree.union_all(select(ApiToken.id).join(tree, ApiToken.minted_by == tree.c.id))


def _managed_filter(manager: ApiToken) -> list[Any]:
    """WHERE clauses of the live tokens ``manager`` may manage: every non-admin token for an admin, else
    itself and what it minted, transitively (admin tokens never: they are set by the operator)."""
    where: list[Any] = [ApiToken.revoked_at.is_(None), ApiToken.is_admin.is_(False)]
    if not manager.is_admin:
        tree = _minted_from(manager.id)
        where += [ApiToken.project_id == manager.project_id, ApiToken.id.in_(select(tree.c.id))]
    return where


def list_tokens(
    session: Session, *, manager: ApiToken, limit: int = 100, offset: int = 0
) -> tuple[list[ApiToken], int]:
    """A page of the live tokens ``manager`` may manage (oldest first) and their total count."""
    where = _managed_filter(manager)
    stmt = select(ApiToken).where(*where).order_by(ApiToken.created_at, ApiToken.id).limit(limit).offset(offset)
    total = session.scalar(select(func.count()).select_from(ApiToken).where(*where))
    return list(session.scalars(stmt)), int(total or 0)


def may_manage(session: Session, *, manager: ApiToken, token_id: str) -> bool:
    """Whether ``manager`` may revoke the live token ``token_id`` (see :func:`list_tokens`)."""
    found = session.scalar(select(ApiToken.id).where(ApiToken.id == token_id, *_managed_filter(manager)))
    return found is not None


def revoke_token(session: Session, *, token_id: str) -> int:
    """Revoke ``token_id`` and every live token it minted, transitively; returns how many were revoked.

    The caller checks the right to do so (:func:`may_manage`); admin tokens are never revoked here.
    """
    tree = _minted_from(token_id)
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id.in_(select(tree.c.id)), ApiToken.revoked_at.is_(None), ApiToken.is_admin.is_(False))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- models, datasets
def create_model(session: Session, *, project_id: str, **fields: Any) -> Model:
    """Add an uploaded model (fields of :class:`backend.models.Model`)."""
    model = Model(project_id=project_id, **fields)
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, *, project_id: str, model_id: str) -> Model | None:
    """The project's model ``model_id``, or None (also for another project's id)."""
    return session.scalar(select(Model).where(Model.id == model_id, Model.project_id == project_id))


def get_model_by_file(session: Session, *, project_id: str, path: str) -> Model | None:
    """The project's uploaded model stored at ``path`` (an assessment's resolved ``model.file``), or None."""
    return session.scalar(select(Model).where(Model.weights_path == path, Model.project_id == project_id))


def list_models(session: Session, *, project_id: str, limit: int = 100, offset: int = 0) -> tuple[list[Model], int]:
    """A page of the project's models (newest first) and their total count."""
    where = Model.project_id == project_id
    rows = session.scalars(select(Model).where(where).order_by(Model.created_at.desc()).limit(limit).offset(offset))
    return list(rows), int(session.scalar(select(func.count()).select_from(Model).where(where)) or 0)


def create_dataset(session: Session, *, project_id: str, **fields: Any) -> Dataset:
    """Add an uploaded dataset (fields of :class:`backend.models.Dataset`)."""
    dataset = Dataset(project_id=project_id, **fields)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, *, project_id: str, dataset_id: str) -> Dataset | None:
    """The project's dataset ``dataset_id``, or None (also for another project's id)."""
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.project_id == project_id))


def list_datasets(session: Session, *, project_id: str, limit: int = 100, offset: int = 0) -> tuple[list[Dataset], int]:
    """A page of the project's datasets (newest first) and their total count."""
    where = Dataset.project_id == project_id
    stmt = select(Dataset).where(where).order_by(Dataset.created_at.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(session.scalar(select(func.count()).select_from(Dataset).where(where)) or 0)


# ------------------------------------------------------------------------------------------------- assessments
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


# ----------------------------------------------------------------------------------------------- trainings, cells
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


# ----------------------------------------------------------------------------------------------- events, reports
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
