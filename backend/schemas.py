"""Request and response bodies of the REST API (pydantic v2), named XCreate / XPublic / XsPublic."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

__all__ = [
    "AssessmentCreate",
    "AssessmentCreated",
    "AssessmentDetail",
    "AssessmentPublic",
    "AssessmentStatusPublic",
    "AssessmentsPublic",
    "BuiltinDatasetPublic",
    "CellPublic",
    "CellsPublic",
    "DatasetPublic",
    "DatasetsPublic",
    "ErrorDetail",
    "ErrorResponse",
    "EstimateItem",
    "EstimatePublic",
    "EventPublic",
    "HealthPublic",
    "ModelPublic",
    "ModelsPublic",
    "ProgressPublic",
    "ProjectCreate",
    "ProjectCreated",
    "ReportPublic",
    "SigningKeyPublic",
    "ResultsPublic",
    "TokenCreate",
    "TokenCreated",
    "TokenPublic",
    "TokensPublic",
    "TrainingPublic",
    "TrainingsPublic",
]


class _Orm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(BaseModel):
    """Why an upload or spec was refused: the request field and a message that says how to fix it."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """A 4xx answer. ``detail`` is an :class:`ErrorDetail` for a refused upload or spec, the list of
    request-validation problems (each with ``loc``, ``msg`` and ``type``) for a malformed request, or a
    plain message."""

    detail: ErrorDetail | list[dict[str, Any]] | str


class SigningKeyPublic(BaseModel):
    """``GET /signing-key``: the public key this server signs report manifests with."""

    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(description="First 16 hex digits of the SHA-256 of the raw public key (as manifests show).")
    public_key_pem: str = Field(description="The public key, PEM (SubjectPublicKeyInfo).")


class HealthPublic(BaseModel):
    """``GET /health``: whether the database and the broker answer."""

    status: str = Field(description="'ok' when every dependency answers, else 'degraded'.")
    database: dict[str, Any]
    broker: dict[str, Any]
    version: str


class TokenCreate(BaseModel):
    """``POST /tokens``: a new token, minted by the caller (a ``manage`` or the admin token)."""

    name: str = Field(default="", max_length=200)
    scope: Literal["read", "submit", "manage"] = Field(
        default="submit",
        description="read: GET requests only; submit: read + upload, submit, cancel and delete; "
        "manage: submit + mint and revoke tokens. At most the caller's own scope.",
    )
    project_id: str | None = Field(
        default=None,
        max_length=32,
        description="The project of the new token (admin token only; default: the caller's project).",
    )


class TokenPublic(_Orm):
    """A token as listed (never its value)."""

    id: str
    name: str
    prefix: str
    is_admin: bool
    scope: str = Field(
        validation_alias=AliasChoices("effective_scope", "scope"),
        description="read, submit or manage; 'admin' for an admin token.",
    )
    project_id: str
    minted_by: str | None = Field(
        default=None, description="The token that minted this one; revoking it revokes this one too."
    )
    created_at: datetime


class TokenCreated(TokenPublic):
    """A new token, with its value: shown this once, stored only hashed."""

    token: str


class TokensPublic(BaseModel):
    """A page of the tokens the caller may manage (``count``: how many in all)."""

    data: list[TokenPublic]
    count: int


class ProjectCreate(BaseModel):
    """``POST /projects`` (admin token only): a new project and its first token."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")


class ProjectCreated(BaseModel):
    id: str
    name: str
    token: TokenCreated


class ModelPublic(_Orm):
    """An uploaded model: an exported graph (``.pt2``/``.onnx``) or an architecture spec plus weights."""

    id: str
    name: str
    format: str = Field(description="How the model was uploaded: 'pt2', 'onnx', 'safetensors' or 'state_dict'.")
    architecture: str = Field(description="Registered architecture, or 'graph' for an exported .pt2/.onnx model.")
    input_shape: list[int] | None = Field(
        default=None, description="One example's input shape (no batch dimension), read from the upload."
    )
    num_classes: int | None = Field(default=None, description="Number of outputs (classes), read from the upload.")
    num_parameters: int = Field(description="Number of parameters.")
    spec: dict[str, Any]
    weights_format: str
    sha256: str = Field(description="SHA-256 of the uploaded model (or weights) file.")
    size_bytes: int
    n_parameters: int
    created_at: datetime


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class DatasetPublic(_Orm):
    """An uploaded dataset."""

    id: str
    name: str
    format: str
    label: str | None
    sensitive: list[str]
    sha256: str
    size_bytes: int
    n_rows: int
    n_columns: int
    summary: dict[str, Any]
    created_at: datetime


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class BuiltinDatasetPublic(BaseModel):
    """A dataset the engine knows by name (``{"dataset": {"name": ...}}`` in a spec)."""

    name: str
    modality: str
    description: str


class AssessmentCreate(BaseModel):
    """``POST /assessments``: an assessment spec whose dataset/model may reference uploads by id.

    ``spec.dataset`` is ``{"name": "census", ...}`` (built-in) or ``{"id": "<dataset id>", ...}``;
    ``spec.model`` may carry ``"id": "<model id>"`` to assess an uploaded model. Server paths are not
    accepted (``path``/``weights``): upload the files and reference them by id.
    """

    spec: dict[str, Any]
    name: str | None = Field(default=None, max_length=200)


class AssessmentPublic(_Orm):
    """An assessment in a listing."""

    id: str
    name: str
    # Read from the ORM's derived ``public_status``: the stored status, or ``stalled`` when the worker died.
    status: str = Field(
        validation_alias=AliasChoices("public_status", "status"),
        description="queued, running, finalizing, succeeded, partial, failed, cancelled; or stalled: running, "
        "but its worker stopped renewing its heartbeat (it died); a worker's recovery sweep resumes it.",
    )
    n_trainings: int
    n_cells: int
    exit_code: int | None
    error: str | None
    warnings: list[dict[str, Any]] = Field(
        default_factory=list,
        description="What a reader must know before trusting the results: {code, message, row} (results' warnings).",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class AssessmentsPublic(BaseModel):
    data: list[AssessmentPublic]
    count: int


class CellPublic(_Orm):
    """One defense x risk x seed cell."""

    key: str
    row: str
    risk: str
    attack: str
    seed: int
    status: str
    reason: str | None
    seconds: float | None
    attempts: int
    metrics: dict[str, float] = Field(default_factory=dict)


class TrainingPublic(_Orm):
    key: str
    status: str
    error: str | None
    seconds: float | None
    attempts: int


class EventPublic(_Orm):
    id: int
    created_at: datetime
    kind: str
    key: str
    message: str
    completed: int | None
    total: int | None


class ProgressPublic(BaseModel):
    """Progress over trainings and cells, with an estimate of the time left."""

    trainings_done: int
    trainings_total: int
    cells_done: int
    cells_total: int
    cells_by_status: dict[str, int]
    fraction: float
    eta_seconds: float | None = Field(
        description="Seconds left: the estimate until a unit finishes, then the pace measured so far."
    )


class ReportPublic(_Orm):
    format: str
    sha256: str
    size_bytes: int
    url: str = ""


class EstimateItem(BaseModel):
    """The estimated time of one kind of unit: the trainings of one row, or the cells of one risk column."""

    unit: str = Field(description="'training' or 'cell'.")
    kind: str = Field(description="The row (trainings) or 'risk/attack' (cells).")
    count: int = Field(description="How many units of this kind the assessment runs.")
    seconds_each: float = Field(description="Estimated seconds per unit.")
    source: str = Field(
        description="'measured': the median of this project's past units of the same kind on the same dataset, "
        "model and training settings; 'model': the per-kind default model (no such past run)."
    )
    samples: int = Field(description="How many past units the measured median is taken over (0 for 'model').")


class EstimatePublic(BaseModel):
    """What an assessment costs: its units and an estimated duration, with how the estimate was derived."""

    cells: int
    trainings: int
    seconds: float = Field(description="Estimated run time on one worker, queueing not included.")
    measured_share: float = Field(description="Share (0..1) of the estimated seconds taken from measured past runs.")
    basis: str = Field(description="How the estimate was derived, in words.")
    items: list[EstimateItem]


class AssessmentCreated(AssessmentPublic):
    """``POST /assessments``: the queued assessment and the estimate of its cost."""

    estimate: EstimatePublic


class CellsPublic(BaseModel):
    """A page of an assessment's cells (plan order) and their total count."""

    data: list[CellPublic]
    count: int


class TrainingsPublic(BaseModel):
    """A page of an assessment's trainings (plan order) and their total count."""

    data: list[TrainingPublic]
    count: int


class ResultsPublic(BaseModel):
    """A page of an assessment's cell results (the engine's ``CellResult`` of every finished cell, plan
    order) and their total count; the whole results document is ``GET /assessments/{id}/report.json``."""

    status: str = Field(description="The assessment's status: results of an active assessment are still coming.")
    data: list[dict[str, Any]]
    count: int


class AssessmentStatusPublic(BaseModel):
    """``GET /assessments/{id}/status``: the cheap poll (answers 304 to a matching ``If-None-Match``)."""

    id: str
    status: str
    progress: ProgressPublic
    eta_at: datetime | None = Field(
        description="When the assessment is expected to finish; it moves only when progress is made."
    )
    updated_at: datetime = Field(description="The last change of the assessment, its trainings or its cells.")
    step: EventPublic | None = Field(description="The latest event: what the worker is doing now.")


class AssessmentDetail(AssessmentPublic):
    """``GET /assessments/{id}``: status, progress counts, estimate, ETA, errors, events and reports (read from
    SQL only, bounded: the cells, trainings and results are listed page by page at their own endpoints)."""

    spec: dict[str, Any]
    summary: dict[str, Any]
    progress: ProgressPublic
    estimate: EstimatePublic | None = Field(description="The estimate made at submit (None for older assessments).")
    updated_at: datetime
    errors: list[str] = Field(description="The assessment's error, then the first training and cell errors.")
    errors_total: int = Field(description="How many errors there are in all (``errors`` lists at most 50).")
    events: list[EventPublic]
    reports: list[ReportPublic]
