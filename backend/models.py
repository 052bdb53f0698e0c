"""SQLAlchemy 2.0 tables of the service.

projects ─┬─ api_tokens
          ├─ models, datasets                      (uploaded artifacts; files live in the artifact store)
          └─ assessments ─┬─ trainings             (one per trained model the plan needs)
                          ├─ cells ── metric_values (one per defense x risk x seed cell; unique key)
                          ├─ reports               (one per format)
                          └─ events                (progress, append-only)

Every id a client sees is a random UUID (hex), so ids reveal nothing about other projects. Schema changes
go through an Alembic revision (``backend/alembic/versions``); the app never calls ``create_all``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ASSESSMENT_ACTIVE",
    "ASSESSMENT_STATUSES",
    "CELL_DONE",
    "CELL_STATUSES",
    "STALLED",
    "TRAINING_SETTLED",
    "ApiToken",
    "Assessment",
    "Base",
    "Cell",
    "Dataset",
    "Event",
    "GRAPH_MODEL_FORMATS",
    "MetricValue",
    "Model",
    "Project",
    "Report",
    "Training",
    "UTCDateTime",
    "new_id",
    "public_status",
    "utcnow",
]

#: Assessment life cycle: queued -> running -> finalizing -> succeeded | partial | failed; cancelled at any
#: point. ``partial``: some training or cell errored (the rest was measured and reported); ``failed``: the
#: baseline could not be trained or measured, nothing could be measured, or the reports could not be made.
ASSESSMENT_STATUSES = ("queued", "running", "finalizing", "succeeded", "partial", "failed", "cancelled")
#: Statuses of an assessment the worker still has to finish.
ASSESSMENT_ACTIVE = ("queued", "running", "finalizing")
#: Terminal cell statuses (the engine's CellResult's, and ``cancelled``); "pending" and "running" are not.
CELL_DONE = ("ok", "not_run", "error", "cancelled")
#: Every cell status: waiting, being measured, or one of CELL_DONE.
CELL_STATUSES = ("pending", "running", *CELL_DONE)
#: Training statuses a worker will not change again (``pending`` and ``running`` it will).
TRAINING_SETTLED = ("done", "error", "cancelled")
#: What the API shows for a running or finalizing assessment whose worker stopped renewing its heartbeat
#: (:attr:`Assessment.public_status`); never stored: a worker's recovery sweep resumes it.
STALLED = "stalled"
#: ``Model.weights_format`` of an exported graph upload: file suffix -> format (torch.export archive, ONNX).
GRAPH_MODEL_FORMATS = {"pt2": ".pt2", "onnx": ".onnx"}

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A random 32-character hex id."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(timezone.utc)


def public_status(status: str, alive_until: datetime | None) -> str:
    """``status`` as the API shows it: ``stalled`` for a running or finalizing assessment whose heartbeat
    lease (``Assessment.alive_until``) ran out, else ``status`` itself."""
    if status in ("running", "finalizing") and alive_until is not None and alive_until < utcnow():
        return STALLED
    return status


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable Alembic names on every backend)."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class Project(Base):
    """A tenant: every artifact, assessment and token belongs to exactly one project."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token of a project, stored as its SHA-256.

    ``scope`` is ``read``, ``submit`` or ``manage`` (see ``backend.core.security.SCOPES``); an admin token
    (``is_admin``) holds every scope. ``minted_by`` is the token that minted this one (None for the admin
    tokens made at start-up and for tokens older than scopes): revoking a token revokes what it minted.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[str] = mapped_column(String(20), default="submit", server_default="submit")
    minted_by: Mapped[str | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    project: Mapped[Project] = relationship(lazy="joined")

    @property
    def effective_scope(self) -> str:
        """``admin`` for an admin token, else its ``scope``."""
        return "admin" if self.is_admin else self.scope


class Model(Base):
    """An uploaded model: architecture spec (JSON) plus weights file in the artifact store."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    architecture: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_path: Mapped[str] = mapped_column(Text)
    weights_path: Mapped[str] = mapped_column(Text)
    weights_format: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_parameters: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # An exported graph (torch.export ``.pt2`` or ONNX) is stored as ``weights_path`` with ``weights_format``
    # ``pt2``/``onnx``, no architecture spec file (``spec_path`` empty), and ``spec`` holding what
    # ``amulet.io.inspect_model_file`` read from it (input shape, classes, parameters, operators).
    @property
    def is_graph(self) -> bool:
        """Whether this is an exported graph (``.pt2``/``.onnx``) rather than an architecture spec + weights."""
        return self.weights_format in GRAPH_MODEL_FORMATS

    @property
    def format(self) -> str:
        """``pt2``, ``onnx``, ``safetensors`` or ``state_dict``: how the model was uploaded."""
        return self.weights_format

    @property
    def input_shape(self) -> list[int] | None:
        """One example's input shape (no batch dimension), as declared by the upload."""
        shape = (self.spec or {}).get("input_shape")
        return [int(v) for v in shape] if isinstance(shape, (list, tuple)) else None

    @property
    def num_classes(self) -> int | None:
        """The number of outputs (classes), as declared by the upload."""
        classes = (self.spec or {}).get("num_classes")
        return int(classes) if isinstance(classes, int) else None

    @property
    def num_parameters(self) -> int:
        """Number of parameters (trainable tensors' elements)."""
        return int(self.n_parameters or 0)


class Dataset(Base):
    """An uploaded dataset file (CSV, Parquet or NPZ) in the artifact store."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    format: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(200), default=None)
    sensitive: Mapped[list[Any]] = mapped_column(JSON, default=list)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_rows: Mapped[int] = mapped_column(Integer)
    n_columns: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assessment(Base):
    """One submitted assessment spec and its life cycle."""

    __tablename__ = "assessments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_trainings: Mapped[int] = mapped_column(Integer, default=0)
    n_cells: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While a worker runs a job of this assessment it renews this lease (now + its ``stall_after``) and
    # clears it when the job ends; a lease in the past means the worker died mid-job.
    alive_until: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # Set once by whoever queues the cells after the last training settles (an atomic claim, no chord).
    cells_dispatched_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_assessments_project_created", "project_id", "created_at"),)

    @property
    def public_status(self) -> str:
        """The status the API shows: the stored one, or ``stalled`` for an active assessment whose
        worker's heartbeat lease ran out (the worker died mid-job; a recovery sweep resumes it)."""
        return public_status(self.status, self.alive_until)

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """The results' assessment-level warnings (few seeds, degenerate baseline, ...), kept in the summary."""
        return [w for w in (self.summary or {}).get("warnings") or [] if isinstance(w, dict)]


class Training(Base):
    """One model training the plan needs (baseline or a defended recipe, per seed)."""

    __tablename__ = "trainings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("assessment_id", "key", name="uq_trainings_assessment_key"),)


class Cell(Base):
    """One defense-row x risk x seed cell; the (assessment, key) pair is unique, so writes are upserts."""

    __tablename__ = "cells"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(500))
    row: Mapped[str] = mapped_column(String(200))
    risk: Mapped[str] = mapped_column(String(100))
    attack: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("assessment_id", "key", name="uq_cells_assessment_key"),)


class MetricValue(Base):
    """One metric value of a cell (unique per cell and metric)."""

    __tablename__ = "metric_values"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("cell_id", "metric", name="uq_metric_values_cell_metric"),)


class Report(Base):
    """A rendered report file (html, pdf, json, junit, manifest) of an assessment."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("assessment_id", "format", name="uq_reports_assessment_format"),)


class Event(Base):
    """A progress or life-cycle event of an assessment (append-only)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(500), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    completed: Mapped[int | None] = mapped_column(Integer, default=None)
    total: Mapped[int | None] = mapped_column(Integer, default=None)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_assessment_id_id", "assessment_id", "id"),)
