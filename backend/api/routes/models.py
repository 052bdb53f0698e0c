"""``/models``: upload (architecture spec JSON + safetensors or a weights-only state_dict), list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status

from backend import crud
from backend.api.deps import CurrentToken, SessionDep, SettingsDep, StoreDep
from backend.core.storage import UploadTooLargeError
from backend.intake import IntakeError, parse_architecture_spec, validate_model, weights_format
from backend.models import new_id
from backend.schemas import ModelPublic, ModelsPublic

router = APIRouter(prefix="/models", tags=["models"])

_SPEC_LIMIT = 1024 * 1024


@router.post("", response_model=ModelPublic, status_code=status.HTTP_201_CREATED)
def upload_model(
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    token: CurrentToken,
    spec: Annotated[
        UploadFile, File(description="Architecture spec JSON (amulet.io.save_model / amulet export-model).")
    ],
    weights: Annotated[UploadFile, File(description="Weights: safetensors, or a state_dict saved with torch.save.")],
    name: Annotated[str, Form(max_length=200)] = "",
) -> ModelPublic:
    """Store, hash and validate a model; nothing is unpickled. 413 past the size limit, 415 for a pickle, 422 else."""
    model_id = new_id()
    directory = store.upload_dir(token.project_id, "models", model_id)
    try:
        raw_spec = spec.file.read(_SPEC_LIMIT + 1)
        if len(raw_spec) > _SPEC_LIMIT:
            raise IntakeError(
                "spec", f"The 'spec' file is larger than {_SPEC_LIMIT} bytes; it should be a small JSON file.", 413
            )
        arch = parse_architecture_spec(raw_spec)
        (directory / "architecture.json").write_bytes(raw_spec)
        staged = directory / "weights.upload"
        sha256, size = store.save_stream(weights.file, staged, max_bytes=settings.max_upload_bytes)
        kind = weights_format(staged)
        final = directory / ("weights.safetensors" if kind == "safetensors" else "weights.pt")
        info = validate_model(arch, staged)
        staged.rename(final)
    except IntakeError as exc:
        store.discard(directory)
        raise HTTPException(exc.status_code, {"field": exc.field, "message": exc.message}) from exc
    except UploadTooLargeError as exc:
        store.discard(directory)
        raise HTTPException(413, {"field": "weights", "message": str(exc)}) from exc
    except BaseException:
        store.discard(directory)
        raise
    row = crud.create_model(
        session,
        project_id=token.project_id,
        id=model_id,
        name=name or (weights.filename or "model"),
        architecture=info.architecture,
        spec=info.spec,
        spec_path=str(directory / "architecture.json"),
        weights_path=str(final),
        weights_format=kind,
        sha256=sha256,
        size_bytes=size,
        n_parameters=info.n_parameters,
    )
    session.commit()
    return ModelPublic.model_validate(row)


@router.get("", response_model=ModelsPublic)
def list_models(session: SessionDep, token: CurrentToken, limit: int = 100, offset: int = 0) -> ModelsPublic:
    """The project's models, newest first."""
    rows, count = crud.list_models(session, project_id=token.project_id, limit=min(limit, 500), offset=offset)
    return ModelsPublic(data=[ModelPublic.model_validate(r) for r in rows], count=count)


@router.get("/{model_id}", response_model=ModelPublic)
def read_model(model_id: str, session: SessionDep, token: CurrentToken) -> ModelPublic:
    """One model of the project (404 for another project's id)."""
    row = crud.get_model(session, project_id=token.project_id, model_id=model_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Model not found.")
    return ModelPublic.model_validate(row)
