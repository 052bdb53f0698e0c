"""``/models``: upload, list, read.

Two ways to upload a model, both without unpickling anything:

* ``model``: an exported graph, a torch.export archive (``.pt2``) or an ONNX model (``.onnx``), of any
  architecture (``amulet export-model`` writes them). Inspected by ``amulet.io.inspect_model_file``; the
  response shows its format, input shape, number of classes, number of parameters and SHA-256.
* ``spec`` + ``weights``: an architecture spec JSON of a registered architecture plus safetensors weights
  (or a weights-only state_dict).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from sqlalchemy.orm import Session

from backend import crud
from backend.api.deps import CurrentToken, LimitQuery, OffsetQuery, SessionDep, SettingsDep, StoreDep
from backend.core.config import Settings
from backend.core.storage import ArtifactStore, UploadTooLargeError
from backend.intake import (
    EXPORT_HINT,
    IntakeError,
    check_layer_lists,
    graph_model_format,
    parse_architecture_spec,
    validate_graph_model,
    validate_model,
    weights_format,
)
from backend.models import GRAPH_MODEL_FORMATS, Model, new_id
from backend.schemas import ModelPublic, ModelsPublic

router = APIRouter(prefix="/models", tags=["models"])

_SPEC_LIMIT = 1024 * 1024


@router.post(
    "",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {"description": "The upload passes AMULET_MAX_UPLOAD_BYTES (or a .pt2 expands past the limit)."},
        415: {"description": "A pickle, an unknown file type, or unsafe content (custom operators, pickled code)."},
        422: {"description": "A malformed or unusable model, naming what is wrong and how to export it."},
    },
)
def upload_model(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    token: CurrentToken,
    model: Annotated[
        UploadFile | None,
        File(description="An exported model of any architecture: torch.export archive (.pt2) or ONNX (.onnx)."),
    ] = None,
    spec: Annotated[
        UploadFile | None,
        File(description="Architecture spec JSON of a registered architecture (amulet.io.save_model), with 'weights'."),
    ] = None,
    weights: Annotated[
        UploadFile | None, File(description="Weights: safetensors, or a state_dict saved with torch.save.")
    ] = None,
    name: Annotated[str, Form(max_length=200)] = "",
) -> ModelPublic:
    """Store, hash and validate a model; nothing is unpickled. 413 past the size limit, 415 unsafe, 422 else.

    Send either ``model`` (a ``.pt2`` or ``.onnx`` file) or ``spec`` + ``weights``.
    """
    if model is not None and (spec is not None or weights is not None):
        raise HTTPException(
            422,
            {
                "field": "model",
                "message": "Send either 'model' (an exported .pt2 or .onnx file) or 'spec' + 'weights' "
                "(an architecture spec and its weights), not both.",
            },
        )
    if model is not None:
        row = _upload_graph(session, settings, store, token.project_id, model, name)
    elif spec is not None and weights is not None:
        row = _upload_spec_and_weights(session, settings, store, token.project_id, spec, weights, name)
    else:
        missing = "weights" if spec is not None else "spec" if weights is not None else "model"
        raise HTTPException(
            422,
            {
                "field": missing,
                "message": "Upload a model as 'model' (an exported .pt2 or .onnx file of any architecture) or as "
                f"'spec' + 'weights' (a registered architecture); '{missing}' is missing. {EXPORT_HINT}",
            },
        )
    session.commit()
    return ModelPublic.model_validate(row)


@contextmanager
def _failed_upload_removed(store: ArtifactStore, directory: Path, field: str) -> Iterator[None]:
    """Answer a failed upload with its 4xx (``field`` names the file part) and leave none of it behind."""
    try:
        yield
    except IntakeError as exc:
        store.discard(directory)
        raise HTTPException(exc.status_code, {"field": exc.field, "message": exc.message}) from exc
    except UploadTooLargeError as exc:
        store.discard(directory)
        raise HTTPException(413, {"field": field, "message": str(exc)}) from exc
    except BaseException:
        store.discard(directory)
        raise


def _upload_graph(
    session: Session, settings: Settings, store: ArtifactStore, project_id: str, upload: UploadFile, name: str
) -> Model:
    """Store an exported graph under a fixed name, inspect it (never load it otherwise), record it."""
    model_id = new_id()
    directory = store.upload_dir(project_id, "models", model_id)
    staged = directory / "model.upload"
    with _failed_upload_removed(store, directory, "model"):
        sha256, size = store.save_stream(upload.file, staged, max_bytes=settings.max_upload_bytes)
        fmt = graph_model_format(upload.filename or "", staged, settings)
        # A fixed name inside the upload's own folder: the client's file name never reaches a path, and an
        # ONNX external-data reference can only resolve inside this folder (which holds nothing else).
        final = directory / f"model{GRAPH_MODEL_FORMATS[fmt]}"
        staged.rename(final)
        info = validate_graph_model(final, settings)
    return crud.create_model(
        session,
        project_id=project_id,
        id=model_id,
        name=name or (upload.filename or "model")[:200],  # the client's file name: any length
        architecture="graph",
        spec=info.spec,
        spec_path="",
        weights_path=str(final),
        weights_format=info.format,
        sha256=sha256,
        size_bytes=size,
        n_parameters=info.num_parameters,
    )


def _upload_spec_and_weights(
    session: Session,
    settings: Settings,
    store: ArtifactStore,
    project_id: str,
    spec: UploadFile,
    weights: UploadFile,
    name: str,
) -> Model:
    """An architecture spec JSON plus safetensors weights (or a weights-only state_dict)."""
    model_id = new_id()
    directory = store.upload_dir(project_id, "models", model_id)
    with _failed_upload_removed(store, directory, "weights"):
        raw_spec = spec.file.read(_SPEC_LIMIT + 1)
        if len(raw_spec) > _SPEC_LIMIT:
            raise IntakeError(
                "spec", f"The 'spec' file is larger than {_SPEC_LIMIT} bytes; it should be a small JSON file.", 413
            )
        arch = parse_architecture_spec(raw_spec)
        # Before any model is built: building and checking one takes time in its number of layers.
        check_layer_lists(arch.get("config"), settings, field_prefix="spec.config", where="spec.config")
        (directory / "architecture.json").write_bytes(raw_spec)
        staged = directory / "weights.upload"
        sha256, size = store.save_stream(weights.file, staged, max_bytes=settings.max_upload_bytes)
        kind = weights_format(staged)
        final = directory / ("weights.safetensors" if kind == "safetensors" else "weights.pt")
        info = validate_model(arch, staged, settings)
        staged.rename(final)
    return crud.create_model(
        session,
        project_id=project_id,
        id=model_id,
        name=name or (weights.filename or "model")[:200],  # the client's file name: any length
        architecture=info.architecture,
        spec=info.spec,
        spec_path=str(directory / "architecture.json"),
        weights_path=str(final),
        weights_format=kind,
        sha256=sha256,
        size_bytes=size,
        n_parameters=info.n_parameters,
    )


@router.get("", response_model=ModelsPublic)
def list_models(
    session: SessionDep, token: CurrentToken, limit: LimitQuery = 100, offset: OffsetQuery = 0
) -> ModelsPublic:
    """The project's models, newest first."""
    rows, count = crud.list_models(session, project_id=token.project_id, limit=limit, offset=offset)
    return ModelsPublic(data=[ModelPublic.model_validate(r) for r in rows], count=count)


@router.get("/{model_id}", response_model=ModelPublic)
def read_model(model_id: str, session: SessionDep, token: CurrentToken) -> ModelPublic:
    """One model of the project (404 for another project's id)."""
    row = crud.get_model(session, project_id=token.project_id, model_id=model_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Model not found.")
    return ModelPublic.model_validate(row)
