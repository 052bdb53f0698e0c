"""Uploaded models and datasets of a project: record, fetch (scoped to the project), list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.models import (
    Dataset,
    Model,
)


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
