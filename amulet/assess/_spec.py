"""The assessment spec: what to assess (model, data, defenses, risks, policy, seeds), loaded from YAML/JSON.

A spec is validated in two passes. The first is structural (pydantic: types, bounds, unknown fields); the
second reads the registry (defense, risk and attack keys, their parameters, policy metrics). Every problem
is reported at once as a :class:`SpecError` that names the exact field path (``defenses[1].stack[0].params.epsilon``)
and, where there is a fixed set, the allowed values.

This module holds the spec's models and its loading; the registry pass is :mod:`amulet.assess._spec_checks`,
the expansion of parameter sweeps into rows :mod:`amulet.assess._spec_sweeps` (both re-exported here).

Example:
    >>> from amulet.assess import load_spec
    >>> spec = load_spec({"dataset": {"name": "census"}, "risks": [{"risk": "evasion"}], "seeds": [0, 1]})
    >>> spec.model.architecture, spec.seeds
    ('linearnet', [0, 1])
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from amulet.assess._spec_checks import BASELINE, RegistryProblemsError, registry_problems
from amulet.assess._spec_sweeps import count_expanded_rows, expand_params, expand_row
from amulet.datasets import dataset_names, datasets
from amulet.exceptions import SpecError
from amulet.utils import TrainConfig

__all__ = [
    "BASELINE",
    "AssessmentSpec",
    "DatasetSpec",
    "DefenseEntry",
    "DefenseRow",
    "ModelSpec",
    "PolicyCheck",
    "RiskEntry",
    "SpecError",
    "count_expanded_rows",
    "expand_params",
    "expand_row",
    "load_spec",
    "spec_json_schema",
]

#: Schema version written into every spec's JSON Schema and every results file.
SPEC_VERSION = 1

#: The built-in datasets' names (the spec accepts every registered one: :func:`amulet.datasets.dataset_names`).
BUILTIN_DATASETS = tuple(d.name for d in datasets() if d.source == "builtin")

#: The largest seed a spec accepts (numpy's and torch's seeding take 32 bits).
MAX_SEED = 2**32 - 1


class DatasetSpec(BaseModel):
    """Which data to use: a built-in dataset by ``name``, or a file by ``path``.

    ``training_size``/``test_size`` subsample the train and test splits: a number in (0, 1] is a fraction,
    an integer above 1 a number of rows (seeded by ``split_seed``). The train split is then divided, per
    assessment seed, into the target's member rows (``member_fraction``) and the adversary's rows.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        description=f"A registered dataset (amulet.datasets.dataset_names()); built in: {', '.join(BUILTIN_DATASETS)}.",
    )
    path: str | None = Field(
        default=None, description="A CSV, Parquet or NPZ file (absolute, or relative to the spec)."
    )
    label: str | None = Field(default=None, description="Label column of a CSV/Parquet file.")
    sensitive: list[str] = Field(default_factory=list, description="Sensitive columns of a CSV/Parquet file.")
    training_size: float | None = Field(
        default=None, gt=0, description="Rows of the train split to keep: fraction in (0, 1] or a row count > 1."
    )
    test_size: float | None = Field(
        default=None, gt=0, description="Rows of the test split to keep: fraction in (0, 1] or a row count > 1."
    )
    member_fraction: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Share of the train split the target trains on; the rest is the adversary's.",
    )
    split_seed: int = Field(default=0, ge=0, description="Seed of the train/test split and of the subsampling.")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a built-in dataset) or 'path' (a CSV, Parquet or NPZ file)")
        if self.name is not None and self.name not in dataset_names():
            raise ValueError(f"unknown built-in dataset {self.name!r}; allowed values: {', '.join(dataset_names())}")
        if self.path is not None:
            suffix = Path(self.path).suffix.lower()
            if suffix not in {".csv", ".parquet", ".pq", ".npz"}:
                raise ValueError(f"'path' must end with .csv, .parquet or .npz; got {self.path!r}")
            if suffix != ".npz" and not self.label:
                raise ValueError("a CSV/Parquet dataset needs 'label' (the name of the label column)")
        return self

    @property
    def source(self) -> str:
        """The dataset's name or file name, for reports."""
        return self.name or Path(self.path or "").name


class ModelSpec(BaseModel):
    """The model under assessment: a registered architecture (+ config), optionally with trained weights,
    or any architecture as an exported graph (``file``).

    Without ``weights`` the baseline is trained from ``training``; with them, the baseline is the given
    model and every defense retrains the architecture. With ``file`` (a torch.export ``.pt2`` archive or an
    ``.onnx`` model, see :func:`amulet.io.load_graph_model`), the baseline is the uploaded model as deployed,
    and every defended row, shadow model and population member trains the same graph from a fresh,
    seeded initialisation (:func:`amulet.io.reinitialize_parameters`).
    """

    model_config = ConfigDict(extra="forbid")

    architecture: str = Field(
        default="linearnet", description="Registered architecture (amulet.models.architectures(); 'cnn' = simplecnn)."
    )
    capacity: Literal["m1", "m2", "m3", "m4"] | None = Field(
        default=None, description="Capacity m1 (smallest) .. m4 of a built-in architecture; config fields override it."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Architecture options (e.g. hidden_layer_sizes, batch_norm)."
    )
    weights: str | None = Field(
        default=None, description="Safetensors weights of the trained model (amulet.io format)."
    )
    file: str | None = Field(
        default=None,
        description="Any architecture with its trained weights: a torch.export archive (.pt2) or an ONNX model "
        "(.onnx), e.g. written by `amulet export-model model.pt2`. Exclusive with architecture, capacity, config "
        "and weights.",
    )

    @model_validator(mode="after")
    def _file_alone(self) -> ModelSpec:
        if self.file is None:
            return self
        # Compared with the defaults, not with the fields a user typed: a dumped spec (every field written out,
        # the defaults included) must load back unchanged.
        fields = type(self).model_fields
        clash = sorted(
            k
            for k in ("architecture", "capacity", "config", "weights")
            if getattr(self, k) != fields[k].get_default(call_default_factory=True)
        )
        if clash:
            raise ValueError(
                f"'file' (an exported model) already defines the architecture and its weights; remove "
                f"{', '.join(repr(k) for k in clash)}"
            )
        if Path(self.file).suffix.lower() not in (".pt2", ".onnx"):
            raise ValueError(f"'file' must be a .pt2 (torch.export) or .onnx model; got {self.file!r}")
        return self


class DefenseEntry(BaseModel):
    """One defense of a stack, with its parameters (a list value expands into one row per value)."""

    model_config = ConfigDict(extra="forbid")

    defense: str = Field(description="Registered defense key.")
    params: dict[str, Any] = Field(default_factory=dict, description="Defense parameters.")


class DefenseRow(BaseModel):
    """A row of the matrix: one defense or a stack of defenses applied together."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Row label (defaults to the defenses' keys joined by '+').")
    stack: list[DefenseEntry] = Field(min_length=1, description="Defenses applied together, in order.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``{"defense": "dp_sgd", "params": {...}}`` is a one-defense stack.
        if isinstance(data, Mapping) and "defense" in data and "stack" not in data:
            data = dict(data)
            entry = {"defense": data.pop("defense"), "params": data.pop("params", {})}
            data["stack"] = [entry]
        return data


class RiskEntry(BaseModel):
    """A column of the matrix: a risk measured by one attack (the risk's first attack by default)."""

    model_config = ConfigDict(extra="forbid")

    risk: str = Field(description="Registered risk key.")
    attack: str | None = Field(default=None, description="Registered attack key (default: the risk's first attack).")
    params: dict[str, Any] = Field(default_factory=dict, description="Attack parameters.")


class PolicyCheck(BaseModel):
    """A threshold on a headline metric, checked for every matching row (and attack).

    By default the measured value is checked; ``delta: true`` checks its change against the baseline. The
    verdict uses the 95% interval over seeds: ``pass`` when the whole interval satisfies the check, ``fail``
    when none of it does, ``inconclusive`` when it straddles the threshold. ``<=``/``>=`` include the
    threshold; ``<``/``>`` exclude it.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="'<risk>.<headline metric>', e.g. 'membership_inference.tpr_at_fpr'.")
    op: Literal["<=", "<", ">=", ">"] = Field(description="Comparison.")
    threshold: float = Field(description="Threshold, in the metric's unit.")
    row: str = Field(default="*", description="Row name, a glob ('dp_sgd*'), 'baseline' or '*' for every row.")
    attack: str | None = Field(
        default=None, description="Only this attack's column (default: every attack of the risk)."
    )
    delta: bool = Field(default=False, description="Check the change against the baseline instead of the value.")
    id: str | None = Field(default=None, description="Stable identifier of the check (default: derived).")

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("threshold must be a finite number")
        return value


class ModelCard(BaseModel):
    """Who and what the assessed model is, shown in the report's model card block (every field optional).

    It documents the assessment and never changes what runs: no training or cell depends on it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Name of the assessed model, e.g. 'credit-scoring'.")
    version: str | None = Field(default=None, description="Version of the model, e.g. '2.3.1' or a git tag.")
    owner: str | None = Field(default=None, description="Team or person accountable for the model.")
    intended_use: str | None = Field(default=None, description="What the model is for, and for whom.")
    training_data: str | None = Field(default=None, description="What the model was trained on (source, period).")
    assessor: str | None = Field(default=None, description="Who ran and reviewed this assessment.")
    sign_off: str | None = Field(default=None, description="Who accepted the results, and when.")


class AssessmentSpec(BaseModel):
    """An assessment: which model, data, defenses (rows) and risks (columns), which policy, which seeds."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(default=1, description="Spec format version.")
    name: str = Field(default="assessment", description="Title of the assessment (shown in reports).")
    description: str = Field(default="", description="Free text shown in reports.")
    model_card: ModelCard | None = Field(
        default=None, description="Optional model card (name, version, owner, ...) shown in the report."
    )
    dataset: DatasetSpec = Field(description="The data.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model architecture (and optional weights).")
    training: TrainConfig = Field(
        default_factory=TrainConfig, description="How the baseline (and every recipe) trains."
    )
    defenses: list[DefenseRow] = Field(
        default_factory=list, description="Rows of the matrix (the baseline is implicit)."
    )
    risks: list[RiskEntry] = Field(min_length=1, description="Columns of the matrix.")
    policy: list[PolicyCheck] = Field(default_factory=list, description="Checks on headline metrics.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=100, description="Seeds.")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct; got {value}")
        if any(s < 0 for s in value):
            raise ValueError(f"seeds must be non-negative; got {value}")
        too_big = [s for s in value if s > MAX_SEED]
        if too_big:
            # numpy and torch seed from 32 bits (and a database stores a seed as a 64-bit integer at most).
            raise ValueError(f"seeds must be at most {MAX_SEED} (2**32 - 1); got {too_big[0]}. Use smaller seeds.")
        return value

    @model_validator(mode="after")
    def _check_against_registry(self) -> AssessmentSpec:
        problems = registry_problems(self)
        if problems:
            raise RegistryProblemsError(problems)
        return self

    def canonical_json(self) -> str:
        """Canonical JSON of the spec (sorted keys): what its SHA-256 is taken over."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------------------------
# Expansion of list-valued parameters


def _resolve_relative(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = dict(data)
    for section, key in (("dataset", "path"), ("model", "weights"), ("model", "file")):
        part = data.get(section)
        if isinstance(part, Mapping) and isinstance(part.get(key), str) and not Path(part[key]).is_absolute():
            part = dict(part)
            part[key] = str((base / part[key]).resolve())
            data[section] = part
    return data


def load_spec(source: AssessmentSpec | Mapping[str, Any] | str | Path) -> AssessmentSpec:
    """Load and validate an assessment spec.

    Args:
        source: A spec object, a dict, a path to a ``.yaml``/``.yml``/``.json`` file, or YAML/JSON text.
            Relative file paths inside a spec file are resolved against the file's directory.

    Returns:
        The validated :class:`AssessmentSpec`.

    Raises:
        SpecError: listing every problem with its field path (and the allowed values where there is a set).
    """
    if isinstance(source, AssessmentSpec):
        return source
    base = Path.cwd()
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and not source.lstrip().startswith("{") and ":" not in source
    ):
        spec_path = Path(source)
        if not spec_path.is_file():
            raise SpecError([{"path": "", "message": f"spec file {str(spec_path)!r} does not exist"}])
        base = spec_path.resolve().parent
        source = spec_path.read_text(encoding="utf-8")
    data: Any
    if isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise SpecError([{"path": "", "message": f"not valid YAML/JSON: {exc}"}]) from None
    else:
        data = source
    if not isinstance(data, Mapping):
        raise SpecError([{"path": "", "message": f"a spec must be a mapping of fields; got {type(data).__name__}"}])
    data = _resolve_relative(dict(data), base)
    try:
        return AssessmentSpec.model_validate(data)
    except ValidationError as exc:
        problems: list[dict[str, str]] = []
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, RegistryProblemsError):
                problems.extend(ctx_error.problems)
                continue
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = _allowed_fields(err["loc"])
                if allowed:
                    message += f"; allowed fields here: {', '.join(allowed)}"
            elif err["type"] == "missing":
                message = "this field is required"
            problems.append({"path": path, "message": message})
        raise SpecError(problems) from None


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (walking the spec's model classes)."""
    model: Any = AssessmentSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        while (
            typing.get_origin(annotation) in (list, typing.Union)
            or str(typing.get_origin(annotation)) == "types.UnionType"
        ):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        model = annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`AssessmentSpec` (for editors and the REST API)."""
    schema = AssessmentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://amulet.dev/schemas/assessment-spec-v{SPEC_VERSION}.json"
    schema["title"] = "Amulet assessment spec"
    return schema
