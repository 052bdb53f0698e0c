"""Validation of a model uploaded as an architecture spec plus weights (safetensors or a weights-only
state_dict); pickles are recognised by their first bytes and refused."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amulet.exceptions import ModelSpecError, UnsafeModelFileError
from amulet.io import build_model, load_model, read_spec
from backend.core.config import Settings, get_settings
from backend.intake.checks import IntakeError, setting_limit

__all__ = ["ModelInfo", "PICKLE_MESSAGE", "parse_architecture_spec", "validate_model", "weights_format"]


#: The answer to a pickled model upload.
PICKLE_MESSAGE = (
    "The '{field}' file is a Python pickle, which is never loaded (unpickling runs arbitrary code). "
    "Export the model as an architecture spec plus safetensors weights with `amulet export-model` "
    "(or amulet.io.save_model) and upload those."
)


@dataclass
class ModelInfo:
    """What a validated model upload records."""

    architecture: str
    spec: dict[str, Any]
    n_parameters: int


def weights_format(path: Path) -> str:
    """``"safetensors"``, ``"state_dict"`` (a torch zip archive) or ``"pickle"``, from the file's first bytes."""
    with path.open("rb") as handle:
        head = handle.read(16)
    size = path.stat().st_size
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "state_dict"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of the range of a finite number")
    return number


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; use a finite number")


def parse_architecture_spec(raw: bytes) -> dict[str, Any]:
    """Parse the architecture spec JSON of a model upload (field ``spec``); NaN and infinite numbers are
    refused like invalid JSON."""
    try:
        spec = json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeError(
            "spec",
            "The 'spec' file must be the architecture spec JSON written by amulet.io.save_model; "
            f"it is not valid JSON ({exc}).",
        ) from exc
    except RecursionError as exc:
        raise IntakeError(
            "spec",
            "The 'spec' file is nested too deeply to be an architecture spec. Upload the spec JSON written "
            "by amulet.io.save_model.",
        ) from exc
    if not isinstance(spec, dict):
        raise IntakeError(
            "spec", "The 'spec' file must hold a JSON object (the architecture spec), not a list or value."
        )
    return spec


def validate_model(spec: dict[str, Any], weights_path: Path, settings: Settings | None = None) -> ModelInfo:
    """Check the architecture spec against the registry and the weights against the architecture.

    The architecture is built on the meta device first (no memory) and refused when it has more parameters
    than ``settings.max_model_parameters`` (default: the process settings), before the weights are loaded
    into a real model: a 2 KB spec can describe a model of billions of parameters.

    Raises:
        IntakeError: 415 for a pickle, 422 for a bad spec or weights (missing/unexpected keys, shapes, NaN)
            or a model past the parameter limit.
    """
    kind = weights_format(weights_path)
    if kind == "pickle":
        raise IntakeError("weights", PICKLE_MESSAGE.format(field="weights"), 415)
    if kind == "unknown":
        raise IntakeError(
            "weights",
            "The 'weights' file is neither safetensors nor a torch state_dict archive. "
            "Save the weights with amulet.io.save_model (safetensors) and upload that file.",
            415,
        )
    max_parameters = (settings or get_settings()).max_model_parameters
    try:
        arch = read_spec(spec)
        meta = build_model(arch, device="meta")  # the registry check: known architecture, valid config
    except (RuntimeError, NotImplementedError):
        meta = None  # a factory that cannot build on the meta device: load_model checks it below
    except (ModelSpecError, ValueError, TypeError) as exc:
        raise IntakeError("spec", f"The architecture spec is invalid: {exc}") from exc
    if meta is not None:
        n_meta = sum(p.numel() for p in meta.parameters())
        if n_meta > max_parameters:
            raise IntakeError(
                "spec",
                f"The architecture spec describes a model of {n_meta:,} parameters, more than "
                f"{setting_limit(max_parameters, 'max_model_parameters')}; an assessment trains several copies. "
                "Upload a smaller model.",
            )
    try:
        model = load_model(arch, weights_path)
    except UnsafeModelFileError as exc:
        raise IntakeError("weights", str(exc), 415) from exc
    except ModelSpecError as exc:
        raise IntakeError("weights", str(exc)) from exc
    except (ValueError, RuntimeError, OSError) as exc:
        raise IntakeError("weights", f"The weights could not be loaded into the architecture: {exc}") from exc
    n_parameters = sum(p.numel() for p in model.parameters())
    return ModelInfo(architecture=arch.architecture, spec=arch.model_dump(mode="json"), n_parameters=int(n_parameters))
