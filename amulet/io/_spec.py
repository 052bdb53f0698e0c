"""The architecture spec: which registered architecture, its config, input shape and number of classes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from amulet.exceptions import InvalidParameterError, ModelSpecError
from amulet.models import AmuletModel, create_model

__all__ = ["FORMAT_VERSION", "ArchitectureSpec", "build_model", "read_spec", "spec_from_model"]

#: Version of the spec format this Amulet writes and reads.
FORMAT_VERSION: Literal[1] = 1
#: Largest spec file read (a spec is a few hundred bytes; this guards against being handed a weights file).
MAX_SPEC_BYTES = 1 << 20
_RESERVED = ("num_classes", "input_shape")


class ArchitectureSpec(BaseModel):
    """What a model *is*, without any code: a registered architecture plus the arguments that build it.

    Serialised as ``model.json`` next to ``model.safetensors`` by :func:`amulet.io.save_model`.

    Attributes:
        format_version: Spec format version (currently 1).
        architecture: Name in :func:`amulet.models.architectures` (``"linearnet"``, ``"simplecnn"``,
            ``"vgg"``, ``"resnet"`` or an operator's entry point); stored in lower case.
        config: Keyword arguments of the architecture's factory other than ``num_classes`` and
            ``input_shape`` (e.g. ``{"hidden_layer_sizes": [128, 256, 128], "batch_norm": true}``).
        input_shape: Shape of one input without the batch axis: ``[n_features]`` for tabular data,
            ``[channels, height, width]`` for images.
        num_classes: Number of output logits.
        weights_sha256: SHA-256 (hex) of the weights file; written by ``save_model`` and checked by
            ``load_model`` when present.

    Example:
        >>> from amulet.io import ArchitectureSpec
        >>> spec = ArchitectureSpec(architecture="linearnet", input_shape=[108], num_classes=2)
        >>> spec.model_kwargs()
        {'num_classes': 2, 'input_shape': (108,)}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = FORMAT_VERSION
    architecture: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    input_shape: tuple[int, ...] = Field(min_length=1, max_length=8)
    num_classes: int = Field(ge=1, le=1_000_000)
    weights_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("architecture")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"every dimension must be a positive int, got {list(value)}")
        return value

    @field_validator("config")
    @classmethod
    def _plain_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in _RESERVED:
            if key in value:
                raise ValueError(f"{key!r} is a top-level field of the spec; move it out of 'config'")
        try:
            return json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config must be plain JSON (numbers, strings, lists, objects): {exc}") from exc

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`amulet.models.create_model`: ``config`` plus classes and input shape."""
        return {**self.config, "num_classes": self.num_classes, "input_shape": tuple(self.input_shape)}


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"]) or "spec"
        given = error.get("input")
        parts.append(f"field {loc!r}: {error['msg']} (got {given!r})")
    return "; ".join(parts)


def read_spec(source: ArchitectureSpec | Mapping[str, Any] | str | Path | bytes) -> ArchitectureSpec:
    """Parse and validate an architecture spec (schema only; see :func:`build_model` for the registry check).

    Args:
        source: An :class:`ArchitectureSpec`, a mapping, JSON text/bytes, or the path of a JSON file.

    Raises:
        ModelSpecError: unreadable or invalid spec; the message names every offending field.
    """
    if isinstance(source, ArchitectureSpec):
        return source
    data: Any = source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        if not path.is_file():
            raise ModelSpecError(f"Architecture spec file {str(path)!r} does not exist.")
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise ModelSpecError(
                f"Architecture spec file {str(path)!r} is larger than {MAX_SPEC_BYTES} bytes; a spec is a small "
                "JSON file (was the weights file given as the spec?)."
            )
        data = path.read_bytes()
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelSpecError(f"The architecture spec is not valid JSON: {exc}.") from exc
    if not isinstance(data, Mapping):
        raise ModelSpecError(f"The architecture spec must be a JSON object, got {type(data).__name__}.")
    try:
        return ArchitectureSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ModelSpecError(f"Invalid architecture spec: {_format_validation_error(exc)}.") from exc


def build_model(spec: ArchitectureSpec | Mapping[str, Any] | str | Path, *, device: str | None = None) -> nn.Module:
    """Build a fresh model from ``spec`` through the architecture registry, leaving torch's RNG untouched.

    Args:
        spec: Anything :func:`read_spec` accepts.
        device: Build directly on this device (``"meta"`` builds shapes only, without memory). Default CPU.

    Raises:
        ModelSpecError: unknown architecture (the message lists the known ones) or a bad config value (the
            message names the field).
    """
    spec = read_spec(spec)
    try:
        with torch.random.fork_rng(devices=[]):
            if device is None:
                return create_model(spec.architecture, **spec.model_kwargs())
            with torch.device(device):
                return create_model(spec.architecture, **spec.model_kwargs())
    except InvalidParameterError as exc:
        raise ModelSpecError(f"Invalid architecture spec for {spec.architecture!r}: {exc}") from exc
    except TypeError as exc:
        raise ModelSpecError(f"Invalid architecture spec for {spec.architecture!r}: {exc}.") from exc
    except FileNotFoundError as exc:  # e.g. resnet with pretrained=true and no cached ImageNet weights
        raise ModelSpecError(f"Cannot build architecture {spec.architecture!r} from the spec: {exc}") from exc


def spec_from_model(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...] | list[int] | None = None,
    num_classes: int | None = None,
) -> ArchitectureSpec:
    """Describe a built-in Amulet model (LinearNet, SimpleCNN, VGG, ResNet) as an :class:`ArchitectureSpec`.

    Args:
        model: An :class:`amulet.models.AmuletModel` from the zoo.
        input_shape: Input shape without batch axis; needed for VGG and ResNet (which run on any size),
            taken from the model for LinearNet and SimpleCNN.
        num_classes: Defaults to the model's ``num_classes``.

    Raises:
        ModelSpecError: the model does not describe itself (not a zoo model) or the input shape is unknown.
    """
    if not isinstance(model, AmuletModel) or not model.architecture:
        raise ModelSpecError(
            f"Cannot describe a {type(model).__name__} automatically: give the architecture name, its config, "
            "the input shape and the number of classes (e.g. amulet export-model --architecture NAME --config JSON "
            "--input-shape C,H,W --num-classes K)."
        )
    shape = input_shape if input_shape is not None else model.default_input_shape()
    if shape is None:
        raise ModelSpecError(
            f"{type(model).__name__} runs on any input size: give the input shape (e.g. --input-shape 3,32,32)."
        )
    classes = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    try:
        return ArchitectureSpec(
            architecture=model.architecture,
            config=model.architecture_config(),
            input_shape=tuple(shape),
            num_classes=classes,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        raise ModelSpecError(f"Invalid architecture spec: {_format_validation_error(exc)}.") from exc
