"""What every job reads first: the assessment's plan, the engine's cache folder, and whether an uploaded
model file may be loaded at all.

An assessment of an uploaded exported model (``model.file``) re-validates the file before every training
and cell (:func:`check_uploaded_model`): the worker never trusts the API's earlier inspection.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from backend import crud
from backend.core.config import Settings
from backend.core.db import session_scope
from backend.core.storage import ArtifactStore

__all__ = ["UploadedModelRefusedError", "cache_dir", "check_uploaded_model", "load_plan", "mark_cancelled"]


@lru_cache(maxsize=32)
def _plan(assessment_id: str, spec_json: str) -> Any:
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.assess import plan_assessment

    return plan_assessment(json.loads(spec_json))


def load_plan(settings: Settings, assessment_id: str) -> tuple[str, Any] | None:
    """(status, plan) of the assessment, or None when it is gone (plans are cached per process)."""
    with session_scope(settings) as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        if row is None:
            return None
        status, spec_json = row.status, json.dumps(row.resolved_spec, sort_keys=True)
    return status, _plan(assessment_id, spec_json)


def cache_dir(settings: Settings) -> Path:
    """The engine's model and cell cache in the artifact store (created if missing)."""
    path = ArtifactStore.from_settings(settings).cache_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


class UploadedModelRefusedError(Exception):
    """The assessment's uploaded model file failed re-validation in the worker; nothing of it was loaded."""


#: (path, mtime, size) of uploaded model files that passed re-validation in this process.
_VALIDATED: set[tuple[str, int, int]] = set()


def check_uploaded_model(settings: Settings, assessment_id: str) -> None:
    """Re-validate the assessment's uploaded exported graph (``model.file``) before the engine loads it.

    The worker trusts nothing the API checked: the file is inspected again with
    ``amulet.io.inspect_model_file`` (no pickle payload runs, no custom operator, no external data outside
    its folder) and its SHA-256 must still be the one recorded at upload (a file swapped in the artifact
    store is refused). The engine's own loader validates once more when it loads.

    Raises:
        UploadedModelRefusedError: the file is missing, unsafe, malformed or changed since upload.
    """
    with session_scope(settings) as session:
        row = crud.get_assessment(session, assessment_id=assessment_id)
        if row is None:
            return
        model = (row.resolved_spec or {}).get("model") or {}
        path = model.get("file") if isinstance(model, dict) else None
        if not path:
            return
        uploaded = crud.get_model_by_file(session, project_id=row.project_id, path=str(path))
        expected = uploaded.sha256 if uploaded is not None else None
    file = Path(str(path))
    try:
        stat = file.stat()
    except OSError as exc:
        raise UploadedModelRefusedError(f"the uploaded model file is missing from the artifact store: {exc}") from exc
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key in _VALIDATED:
        return
    # Engine imports happen in the job process only: the worker forks job processes and must not load torch
    # itself (worker.supervisor); importing the engine also takes seconds.
    from amulet.io import inspect_model_file

    try:
        info = inspect_model_file(file)
    except (UnsafeModelFileError, ModelSpecError) as exc:
        raise UploadedModelRefusedError(f"the uploaded model was refused before loading: {exc}") from exc
    if expected is None:
        raise UploadedModelRefusedError(
            "the model file is not an upload of this project (upload it with POST /models and reference its id)"
        )
    if info.sha256 != expected:
        raise UploadedModelRefusedError(
            f"the uploaded model file changed since upload (SHA-256 {info.sha256[:12]}, recorded "
            f"{expected[:12]}); upload it again"
        )
    _VALIDATED.add(key)


def mark_cancelled(settings: Settings, assessment_id: str) -> None:
    """Mark what is left of a cancelled assessment ``cancelled``."""
    with session_scope(settings) as session:
        crud.cancel_remaining(session, assessment_id=assessment_id)
