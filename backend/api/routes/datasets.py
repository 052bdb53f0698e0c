"""``/datasets``: upload (CSV/Parquet with label and sensitive columns, NPZ with x/y/z), list, built-ins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status

from amulet.datasets import datasets
from backend import crud
from backend.api.deps import CurrentToken, LimitQuery, OffsetQuery, SessionDep, SettingsDep, StoreDep
from backend.core.storage import UploadTooLargeError
from backend.intake import IntakeError, dataset_format, upload_message, validate_dataset
from backend.models import new_id
from backend.schemas import BuiltinDatasetPublic, DatasetPublic, DatasetsPublic

router = APIRouter(prefix="/datasets", tags=["datasets"])


def _split(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


@router.post("", response_model=DatasetPublic, status_code=status.HTTP_201_CREATED)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    token: CurrentToken,
    file: Annotated[UploadFile, File(description="A .csv, .parquet or .npz file (NPZ arrays x, y, optional z).")],
    label: Annotated[str | None, Form(max_length=200, description="Label column (CSV/Parquet).")] = None,
    sensitive: Annotated[list[str] | None, Form(description="Sensitive columns (repeat or comma-separate).")] = None,
    name: Annotated[str, Form(max_length=200)] = "",
) -> DatasetPublic:
    """Store, hash and validate a dataset (limits, zip bombs, columns, NaN/Inf); 413/415/422 name the field."""
    sensitive_columns = _split(sensitive or [])
    dataset_id = new_id()
    directory = store.upload_dir(token.project_id, "datasets", dataset_id)
    path = None
    try:
        fmt = dataset_format(file.filename or "")
        path = directory / f"data.{'parquet' if fmt == 'parquet' else fmt}"
        sha256, size = store.save_stream(file.file, path, max_bytes=settings.max_upload_bytes)
        info = validate_dataset(path, fmt, label=label, sensitive=sensitive_columns, settings=settings)
    except IntakeError as exc:
        store.discard(directory)
        message = upload_message(exc.message, path, file.filename)
        raise HTTPException(exc.status_code, {"field": exc.field, "message": message}) from exc
    except UploadTooLargeError as exc:
        store.discard(directory)
        raise HTTPException(413, {"field": "file", "message": str(exc)}) from exc
    except BaseException:
        store.discard(directory)
        raise
    row = crud.create_dataset(
        session,
        project_id=token.project_id,
        id=dataset_id,
        name=name or (file.filename or "dataset")[:200],  # the client's file name: any length
        format=fmt,
        label=label if fmt != "npz" else None,
        sensitive=sensitive_columns,
        path=str(path),
        sha256=sha256,
        size_bytes=size,
        n_rows=info.n_rows,
        n_columns=info.n_columns,
        summary=info.summary,
    )
    session.commit()
    return DatasetPublic.model_validate(row)


@router.get("", response_model=DatasetsPublic)
def list_datasets(
    session: SessionDep, token: CurrentToken, limit: LimitQuery = 100, offset: OffsetQuery = 0
) -> DatasetsPublic:
    """The project's uploaded datasets, newest first."""
    rows, count = crud.list_datasets(session, project_id=token.project_id, limit=limit, offset=offset)
    return DatasetsPublic(data=[DatasetPublic.model_validate(r) for r in rows], count=count)


@router.get("/builtin", response_model=list[BuiltinDatasetPublic])
def builtin_datasets(token: CurrentToken) -> list[BuiltinDatasetPublic]:
    """Datasets a spec can name directly (``{"dataset": {"name": "census"}}``): the engine's dataset registry."""
    return [BuiltinDatasetPublic(name=d.name, modality=d.modality, description=d.description) for d in datasets()]


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep, token: CurrentToken) -> DatasetPublic:
    """One dataset of the project (404 for another project's id)."""
    row = crud.get_dataset(session, project_id=token.project_id, dataset_id=dataset_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Dataset not found.")
    return DatasetPublic.model_validate(row)
