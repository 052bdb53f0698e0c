"""Upload ids in a submitted spec -> artifact paths of this project (client-supplied paths are refused),
and what pre-flight needs to know about the uploaded model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend import crud
from backend.intake import (
    IntakeError,
)

__all__ = ["UploadedModel", "find_uploads", "resolve_spec"]


#: amulet.io architecture names whose assessment-spec name differs.
_SPEC_ARCHITECTURES = {"simplecnn": "cnn"}


@dataclass
class UploadedModel:
    """What pre-flight needs to know about an uploaded model: its name, its declared architecture spec (for an
    exported graph: what inspection read from it) and whether it is an exported graph."""

    name: str
    spec: dict[str, Any]
    graph: bool = False


def resolve_spec(session: Session, *, project_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Replace upload ids by artifact paths (scoped to ``project_id``); refuse client-supplied paths."""
    resolved = copy.deepcopy(spec)
    dataset = resolved.get("dataset")
    if isinstance(dataset, dict):
        if "path" in dataset:
            raise IntakeError(
                "spec.dataset.path",
                "Server paths are not accepted. Upload the file with POST /datasets and reference it as "
                '{"dataset": {"id": "<dataset id>"}}.',
            )
        dataset_id = dataset.pop("id", None)
        if dataset_id is not None:
            row = crud.get_dataset(session, project_id=project_id, dataset_id=str(dataset_id))
            if row is None:
                raise IntakeError(
                    "spec.dataset.id", f"No dataset with id {dataset_id!r} in this project (GET /datasets)."
                )
            for key in ("label", "sensitive"):
                if key in dataset:
                    raise IntakeError(f"spec.dataset.{key}", f"'{key}' is fixed at upload; remove it from the spec.")
            dataset["path"] = row.path
            if row.format != "npz":
                dataset["label"] = row.label
                dataset["sensitive"] = list(row.sensitive or [])
    model = resolved.get("model")
    if isinstance(model, dict):
        for key in ("weights", "file"):
            if key in model:
                raise IntakeError(
                    f"spec.model.{key}",
                    "Server paths are not accepted. Upload the model with POST /models (an exported .pt2 or .onnx "
                    "file as 'model', or 'spec' + 'weights') and reference it as "
                    '{"model": {"id": "<model id>"}}.',
                )
        model_id = model.pop("id", None)
        if model_id is not None:
            row_m = crud.get_model(session, project_id=project_id, model_id=str(model_id))
            if row_m is None:
                raise IntakeError("spec.model.id", f"No model with id {model_id!r} in this project (GET /models).")
            if row_m.is_graph:
                # The uploaded graph is the architecture: registry fields do not apply to it.
                for key in ("architecture", "capacity", "config"):
                    model.pop(key, None)
                model["file"] = row_m.weights_path
            else:
                architecture = str(row_m.spec.get("architecture", ""))
                model["architecture"] = _SPEC_ARCHITECTURES.get(architecture, architecture)
                model["config"] = dict(row_m.spec.get("config") or {})
                model["weights"] = row_m.weights_path
    return resolved


def find_uploads(session: Session, *, project_id: str, spec: dict[str, Any]) -> tuple[str | None, UploadedModel | None]:
    """The submitted spec's dataset name (an upload's file name) and uploaded model, for pre-flight messages."""
    dataset_name: str | None = None
    dataset = spec.get("dataset")
    if isinstance(dataset, dict) and dataset.get("id") is not None:
        row = crud.get_dataset(session, project_id=project_id, dataset_id=str(dataset["id"]))
        dataset_name = row.name if row is not None else None
    uploaded: UploadedModel | None = None
    model = spec.get("model")
    if isinstance(model, dict) and model.get("id") is not None:
        row_m = crud.get_model(session, project_id=project_id, model_id=str(model["id"]))
        if row_m is not None:
            name = row_m.name or str(row_m.id)
            uploaded = UploadedModel(name=name, spec=dict(row_m.spec or {}), graph=row_m.is_graph)
    return dataset_name, uploaded
