"""From a submitted spec to a planned assessment: resolve upload ids to artifact paths, validate, plan.

Clients reference their uploads by id (``{"dataset": {"id": ...}}``, ``{"model": {"id": ...}}``); server
paths in a submitted spec are refused, so no client can make the worker read a file of its choosing.
Validation is the engine's (:func:`amulet.assess.load_spec`); planning is cheap (no training).

Before anything is queued, :func:`preflight` checks that the model fits the data: the dataset is loaded the
way the worker loads it (``amulet.assess`` ``load_bundle``), the architecture is built for its input shape and
class count (``architecture_spec`` and ``amulet.io.build_model`` on the meta device, so nothing is
allocated), one forward pass on meta tensors checks the output, an uploaded model's declared input shape and
class count are compared with the dataset's and its weights are checked against the architecture
(``amulet.io.load_model``), and the model's size is bounded. An uploaded exported graph (``.pt2``/``.onnx``,
resolved to ``model.file``) is checked by ``amulet.io.preflight_graph_model`` against the dataset's input
shape and class count: it validates the file again, then runs a finite forward pass on a batch and checks
that gradients reach the input. Each mismatch is a 422 naming it and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from backend import crud
from backend.core.config import Settings, get_settings
from backend.intake import (
    IntakeError,
    check_defense_rows,
    check_finite_numbers,
    check_layer_lists,
    check_planned_rows,
    setting_limit,
)

__all__ = [
    "MAX_LAYER_WIDTH",
    "MAX_MODEL_PARAMETERS",
    "PlannedAssessment",
    "PreflightInfo",
    "check_bounds",
    "estimate_cost",
    "plan_submission",
    "preflight",
    "resolve_spec",
]

#: amulet.io architecture names whose assessment-spec name differs.
_SPEC_ARCHITECTURES = {"simplecnn": "cnn"}
#: Default largest model an assessment may train (parameters; setting ``max_model_parameters``): 500 M float32
#: parameters are 2 GB per copy, and an assessment holds several copies (shadow models, defended rows).
MAX_MODEL_PARAMETERS: int = Settings.model_fields["max_model_parameters"].default
#: Default widest fully connected layer in a model config (setting ``max_layer_width``).
MAX_LAYER_WIDTH: int = Settings.model_fields["max_layer_width"].default


@dataclass
class UploadedModel:
    """What pre-flight needs to know about an uploaded model: its name, its declared architecture spec (for an
    exported graph: what inspection read from it) and whether it is an exported graph."""

    name: str
    spec: dict[str, Any]
    graph: bool = False


@dataclass
class PreflightInfo:
    """What pre-flight learnt that the cost estimate uses."""

    n_parameters: int | None
    n_train: int | None


@dataclass
class PlannedAssessment:
    """A validated, resolved spec, the rows the database needs and the estimate of its cost."""

    name: str
    resolved_spec: dict[str, Any]
    training_keys: list[str]
    cells: list[dict[str, Any]]
    estimate: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def _uploads(session: Session, *, project_id: str, spec: dict[str, Any]) -> tuple[str | None, UploadedModel | None]:
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


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in shape) + "]"


def _check_widths(config: Any, settings: Settings) -> None:
    """Layer lists of a submitted model config (see :func:`backend.intake.check_layer_lists`)."""
    check_layer_lists(config, settings, field_prefix="spec.model.config", where="model.config")


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def check_bounds(spec: dict[str, Any], settings: Settings) -> None:
    """Refuse a submitted spec whose work or text is past the operator's bounds, before anything is loaded.

    Checked on the raw spec (cheap, before validation and planning): the name and description lengths, the
    numbers of seeds, defense rows and risk columns, the number of cells they make ((1 + rows) x risks x
    seeds, the baseline row included) and the model config's layer lists. Each limit is a setting
    (``AMULET_MAX_*``) and the 422 names it.

    Raises:
        IntakeError: 422 naming the field, the limit and the setting.
    """
    check_finite_numbers(spec, "spec")  # NaN/Infinity: no JSON answer or PostgreSQL JSON column holds them
    name, description = spec.get("name"), spec.get("description")
    if isinstance(name, str) and len(name) > settings.max_name_length:
        raise IntakeError(
            "spec.name",
            f"spec.name has {len(name):,} characters, more than "
            f"{setting_limit(settings.max_name_length, 'max_name_length')}. "
            "Use a shorter name.",
        )
    if isinstance(description, str) and len(description) > settings.max_description_length:
        raise IntakeError(
            "spec.description",
            f"spec.description has {len(description):,} characters, more than "
            f"{setting_limit(settings.max_description_length, 'max_description_length')}. Shorten it.",
        )
    seeds, rows, risks = (
        _count(spec.get("seeds")),
        check_defense_rows(spec.get("defenses"), settings),
        _count(spec.get("risks")),
    )
    for field, count, limit, setting, what in (
        ("spec.seeds", seeds, settings.max_seeds, "max_seeds", "seeds"),
        ("spec.defenses", rows, settings.max_defense_rows, "max_defense_rows", "defense rows"),
        ("spec.risks", risks, settings.max_risk_columns, "max_risk_columns", "risk columns"),
    ):
        if count is not None and count > limit:
            raise IntakeError(
                field,
                f"{field[5:]}: {count:,} {what}, more than {setting_limit(limit, setting)}. "
                f"List fewer {what} (or split the sweep over several assessments).",
            )
    cells = (1 + (rows or 0)) * (risks or 1) * (seeds if seeds is not None else 3)
    _check_cells(cells, settings)
    model = spec.get("model")
    if isinstance(model, dict):
        _check_widths(model.get("config"), settings)


def _check_cells(cells: int, settings: Settings) -> None:
    if cells > settings.max_assessment_cells:
        raise IntakeError(
            "spec",
            f"The assessment makes {cells:,} cells ((1 + defense rows) x risks x seeds), more than "
            f"{setting_limit(settings.max_assessment_cells, 'max_assessment_cells')}. Use fewer seeds, defense rows or "
            "risks, or split it over several assessments.",
        )


def _check_upload(uploaded: UploadedModel, bundle: Any, dataset: str) -> None:
    """The uploaded model's declared input shape and class count against the dataset's (checked at upload
    against the weights by a forward pass, so they are what the weights expect; for an exported graph, read
    from its exported signature)."""
    declared = tuple(int(v) for v in uploaded.spec.get("input_shape") or ())
    want = tuple(int(v) for v in bundle.input_shape)
    # An exported graph is re-exported with the dataset's shape; registry weights are retrained on its features.
    fix = (
        "Export the model again for this dataset (`amulet export-model ... --dataset`, "
        f"input_shape {_shape_text(want)})"
        if uploaded.graph
        else f"Upload a model trained on this dataset's features (input_shape {_shape_text(want)})"
    )
    where = "model.file" if uploaded.graph else "model.weights"
    if declared and declared != want:
        if len(declared) == 1 and len(want) == 1:
            encoding = " after encoding (categorical columns one-hot encoded)" if bundle.modality == "tabular" else ""
            message = (
                f"{where}: the first layer of the uploaded model {uploaded.name!r} expects {declared[0]} input "
                f"features but dataset {dataset!r} has {want[0]}{encoding}. {fix}, or assess the model on the "
                "data it was trained on."
            )
        else:
            message = (
                f"{where}: the uploaded model {uploaded.name!r} expects inputs of shape {_shape_text(declared)} "
                f"but dataset {dataset!r} has inputs of shape {_shape_text(want)}. "
                + (
                    f"{fix}, or assess the model on the data it was trained on."
                    if uploaded.graph
                    else "Upload a model built for this input shape, or assess the model on the data it was trained on."
                )
            )
        raise IntakeError("spec.model.id", message)
    classes = uploaded.spec.get("num_classes")
    if isinstance(classes, int) and classes != bundle.num_classes:
        raise IntakeError(
            "spec.model.id",
            f"{where}: the uploaded model {uploaded.name!r} has {classes} outputs but dataset {dataset!r} has "
            f"{bundle.num_classes} classes. Upload a model with one output per class of this dataset's label, or "
            "assess the model on the data it was trained on.",
        )


def preflight(
    spec: Any,
    *,
    dataset_name: str | None = None,
    uploaded: UploadedModel | None = None,
    settings: Settings | None = None,
) -> PreflightInfo:
    """Check that the spec's model fits its dataset, before anything is queued (no training, nothing allocated).

    Args:
        spec: A validated :class:`amulet.assess.AssessmentSpec` (server paths resolved).
        dataset_name: How messages name the dataset (an upload's file name; default: the spec's source).
        uploaded: The uploaded model the spec references, if any (its declared input shape and classes).
        settings: The bounds (``max_model_parameters``, ``max_model_layers``, ``max_layer_width``); default:
            the process settings.

    Raises:
        IntakeError: 422 naming the field, the mismatch and the fix: a dataset that cannot be loaded, a
            model config out of bounds, an architecture that cannot take the dataset's inputs or does not give
            one output per class, an uploaded model built for another input shape or class count, weights that
            do not fit the architecture, or a model larger than the ``max_model_parameters`` setting.

    Returns:
        What the cost estimate needs: the model's parameter count and the number of training rows.
    """
    import torch

    from amulet.assess import architecture_spec, load_bundle
    from amulet.exceptions import AmuletError, ModelSpecError, UnsafeModelFileError
    from amulet.io import build_model, load_model

    settings = settings or get_settings()
    dataset = dataset_name or str(spec.dataset.source)
    try:
        bundle = load_bundle(spec.dataset)  # what the worker will load (cached per process)
    except (AmuletError, ValueError, KeyError, OSError) as exc:
        raise IntakeError("spec.dataset", f"dataset: {dataset!r} could not be loaded: {exc}") from exc
    graph_file = getattr(spec.model, "file", None)
    n_train = _n_rows(bundle)
    if graph_file:
        _preflight_graph(str(graph_file), bundle, dataset, uploaded, settings)
        declared = int(uploaded.spec.get("num_parameters") or 0) if uploaded is not None else 0
        return PreflightInfo(n_parameters=declared or None, n_train=n_train)
    arch = architecture_spec(spec.model, bundle)
    _check_widths(arch["config"], settings)
    if uploaded is not None:
        _check_upload(uploaded, bundle, dataset)
    where = "spec.model.config" if spec.model.config else "spec.model"
    try:
        model = build_model(arch, device="meta")
    except (RuntimeError, NotImplementedError):  # a factory that cannot build on the meta device
        model = None
    except ModelSpecError as exc:
        if "input_shape" in str(exc):  # the architecture cannot take this dataset's inputs at all
            raise _modality_error(arch, bundle, dataset, exc) from exc
        raise IntakeError(where, f"model: {exc}") from exc
    n_parameters: int | None = None
    if model is not None:
        n_parameters = sum(p.numel() for p in model.parameters())
        if n_parameters > settings.max_model_parameters:
            raise IntakeError(
                where,
                f"model: architecture {arch['architecture']!r} with config {arch['config']} has {n_parameters:,} "
                f"parameters for dataset {dataset!r}, more than "
                f"{setting_limit(settings.max_model_parameters, 'max_model_parameters')}. "
                "Use smaller layers (e.g. the capacities m1..m4).",
            )
        _check_forward(model, arch, bundle, dataset, torch)
    weights = spec.model.weights
    if weights:
        try:
            load_model(arch, weights)
        except (ModelSpecError, UnsafeModelFileError) as exc:
            raise IntakeError("spec.model.id", f"model.weights: {exc}") from exc
    return PreflightInfo(n_parameters=n_parameters, n_train=n_train)


def _n_rows(bundle: Any) -> int | None:
    try:
        return len(bundle.train)
    except TypeError:  # a split without a length: the estimate falls back to the spec's training_size
        return None


def _preflight_graph(path: str, bundle: Any, dataset: str, uploaded: UploadedModel | None, settings: Settings) -> None:
    """An exported graph (``model.file``) against the dataset: declared shape and classes, then the engine's
    pre-flight (validated again before it loads: finite forward pass on a batch, gradients reach the input)."""
    from amulet.exceptions import ModelSpecError, UnsafeModelFileError
    from amulet.io import preflight_graph_model

    field = "spec.model.id" if uploaded is not None else "spec.model.file"
    if uploaded is not None:
        _check_upload(uploaded, bundle, dataset)
        n_parameters = int(uploaded.spec.get("num_parameters") or 0)
        if n_parameters > settings.max_model_parameters:
            raise IntakeError(
                field,
                f"model.file: the uploaded model {uploaded.name!r} has {n_parameters:,} parameters, more than "
                f"{setting_limit(settings.max_model_parameters, 'max_model_parameters')}. Upload a smaller model.",
            )
    name = f"the uploaded model {uploaded.name!r}" if uploaded is not None else "the model"
    try:
        preflight_graph_model(path, tuple(int(v) for v in bundle.input_shape), int(bundle.num_classes))
    except (ModelSpecError, UnsafeModelFileError) as exc:
        raise IntakeError(field, f"model.file: {name} does not fit dataset {dataset!r}: {exc}") from exc


def _modality_error(arch: dict[str, Any], bundle: Any, dataset: str, exc: Exception) -> IntakeError:
    return IntakeError(
        "spec.model.architecture",
        f"model.architecture: {arch['architecture']!r} cannot take dataset {dataset!r}'s inputs of shape "
        f"{_shape_text(tuple(bundle.input_shape))} ({bundle.modality}): {exc} Pick an architecture for this "
        "modality (linearnet for tabular data; cnn, vgg or resnet for images).",
    )


def _check_forward(model: Any, arch: dict[str, Any], bundle: Any, dataset: str, torch: Any) -> None:
    """One forward pass on meta tensors of the dataset's input shape: it runs and gives one logit per class."""
    shape = tuple(bundle.input_shape)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape, device="meta"))
    except NotImplementedError:  # an operation without a meta kernel: the worker's run will tell
        return
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise _modality_error(arch, bundle, dataset, exc) from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, bundle.num_classes):
        got = _shape_text(tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        raise IntakeError(
            "spec.model.architecture",
            f"model.architecture: {arch['architecture']!r} gives outputs of shape {got} for 2 inputs, but dataset "
            f"{dataset!r} has {bundle.num_classes} classes (expected [2, {bundle.num_classes}]).",
        )


def plan_submission(
    session: Session,
    *,
    project_id: str,
    spec: dict[str, Any],
    name: str | None,
    settings: Settings | None = None,
) -> PlannedAssessment:
    """Bound (:func:`check_bounds`), resolve, validate (422 naming the field), pre-flight (:func:`preflight`)
    and plan a submitted spec; ``settings`` (default: the process settings) hold the bounds."""
    from amulet.assess import SpecError, load_spec, plan_assessment

    settings = settings or get_settings()
    if name is not None and len(name) > settings.max_name_length:
        raise IntakeError(
            "name",
            f"name has {len(name):,} characters, more than "
            f"{setting_limit(settings.max_name_length, 'max_name_length')}. "
            "Use a shorter name.",
        )
    check_bounds(spec, settings)
    resolved = resolve_spec(session, project_id=project_id, spec=spec)
    try:
        loaded = load_spec(resolved)
    except SpecError as exc:
        first = exc.errors[0]["path"] if exc.errors else ""
        raise IntakeError(f"spec.{first}".rstrip("."), str(exc)) from exc
    except ValueError as exc:
        raise IntakeError("spec", str(exc)) from exc
    dataset_name, uploaded = _uploads(session, project_id=project_id, spec=spec)
    info = preflight(loaded, dataset_name=dataset_name, uploaded=uploaded, settings=settings)
    plan = plan_assessment(loaded)
    _check_cells(len(plan.cells), settings)  # the planner's own count (risks may expand to several attacks)
    check_planned_rows(row.name for row in plan.rows)
    cells = [{"key": c.key, "row": c.row, "risk": c.risk, "attack": c.attack, "seed": c.seed} for c in plan.cells]
    resolved_spec = loaded.model_dump(mode="json")
    training_keys = [t.key for t in plan.trainings]
    return PlannedAssessment(
        name=name or loaded.name,
        resolved_spec=resolved_spec,
        training_keys=training_keys,
        cells=cells,
        estimate=estimate_cost(
            session,
            project_id=project_id,
            resolved_spec=resolved_spec,
            training_keys=training_keys,
            cells=cells,
            info=info,
        ),
    )


# ------------------------------------------------------------------------------------------------ cost estimate
#: Seconds one cell of each ``risk/attack`` took on the reference workload of the per-kind model: census
#: (4,000 training rows), LinearNet [64, 32] (about 8,500 parameters), 5 epochs, on 2 CPU cores (the mean per
#: column of ``benchmarks/bench_census_matrix.py``, docs/benchmarks.md "Census matrix").
MODEL_CELL_SECONDS: dict[str, float] = {
    "attribute_inference/duddu_cikm_2022": 0.72,
    "distribution_inference/suri_evans_2022": 0.59,
    "membership_inference/lira": 0.42,
    "poisoning/badnets": 0.15,
    "unauth_model_ownership/model_extraction": 0.08,
    "evasion/pgd": 0.03,
    "discriminatory_behavior/subgroup_metrics": 0.02,
    "data_reconstruction/fredrikson_ccs_2015": 0.02,
}
#: A cell of an attack the reference run did not measure: the slowest measured column's time.
MODEL_CELL_SECONDS_OTHER = 0.72
#: One training on the reference workload (the benchmark's 0.14-0.29 s per training, rounded up).
MODEL_TRAINING_SECONDS = 0.3
#: Fixed cost of any unit (task bookkeeping, loading the model), not scaled with the workload.
MODEL_UNIT_OVERHEAD_SECONDS = 0.05
#: The reference workload the per-kind model's seconds were measured on.
MODEL_REFERENCE = {"rows": 4_000, "epochs": 5, "parameters": 8_500}
#: How many of the project's latest assessments the measured estimate looks through.
HISTORY_ASSESSMENTS = 100


def workload_digest(resolved_spec: dict[str, Any]) -> str:
    """What makes two assessments' units "of the same kind": the same dataset, model and training settings."""
    basis = {k: resolved_spec.get(k) for k in ("dataset", "model", "training")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:16]


def training_kind(key: str) -> str:
    """The row of a training key (``t.<row>.s<seed>.<digest>``)."""
    parts = key.split(".")
    return parts[1] if len(parts) > 2 else key


def _model_scale(resolved_spec: dict[str, Any], info: PreflightInfo | None) -> float:
    """Work relative to the reference workload: training rows x epochs x parameters (a coarse linear model)."""
    rows = info.n_train if info is not None and info.n_train else None
    if rows is None:
        size = (resolved_spec.get("dataset") or {}).get("training_size")
        rows = int(size) if isinstance(size, (int, float)) and size > 1 else MODEL_REFERENCE["rows"]
    epochs = (resolved_spec.get("training") or {}).get("epochs") or MODEL_REFERENCE["epochs"]
    parameters = (info.n_parameters if info is not None else None) or MODEL_REFERENCE["parameters"]
    return (
        (rows / MODEL_REFERENCE["rows"])
        * (float(epochs) / MODEL_REFERENCE["epochs"])
        * (parameters / MODEL_REFERENCE["parameters"])
    )


def estimate_cost(
    session: Session,
    *,
    project_id: str,
    resolved_spec: dict[str, Any],
    training_keys: list[str],
    cells: list[dict[str, Any]],
    info: PreflightInfo | None = None,
) -> dict[str, Any]:
    """Estimate an assessment's run time from its plan (the :class:`backend.schemas.EstimatePublic` fields).

    Each unit kind (the trainings of one row; the cells of one ``risk/attack`` column) is timed by the
    median seconds of this project's past units of the same kind whose assessment had the same dataset, model
    and training settings (:func:`workload_digest`), among its latest :data:`HISTORY_ASSESSMENTS`
    assessments. A kind without such a past unit falls back to the per-kind model: the reference seconds
    (:data:`MODEL_CELL_SECONDS`, :data:`MODEL_TRAINING_SECONDS`, measured on census with a small MLP) scaled
    linearly by training rows x epochs x model parameters, plus :data:`MODEL_UNIT_OVERHEAD_SECONDS`. The
    total is the sum over units: one worker, queueing not included.
    """
    digest = workload_digest(resolved_spec)
    similar = [
        a
        for a, spec in crud.recent_assessment_specs(session, project_id=project_id, limit=HISTORY_ASSESSMENTS)
        if workload_digest(spec) == digest
    ]
    past_cells, past_trainings = crud.unit_seconds(session, assessment_ids=similar)
    measured_cells: dict[str, list[float]] = {}
    for risk, attack, seconds in past_cells:
        measured_cells.setdefault(f"{risk}/{attack}", []).append(seconds)
    measured_trainings: dict[str, list[float]] = {}
    for key, seconds in past_trainings:
        measured_trainings.setdefault(training_kind(key), []).append(seconds)
    scale = _model_scale(resolved_spec, info)

    counts: dict[tuple[str, str], int] = {}
    for key in training_keys:
        counts[("training", training_kind(key))] = counts.get(("training", training_kind(key)), 0) + 1
    for cell in cells:
        kind = f"{cell['risk']}/{cell['attack']}"
        counts[("cell", kind)] = counts.get(("cell", kind), 0) + 1
    items: list[dict[str, Any]] = []
    total = measured = 0.0
    for (unit, kind), count in counts.items():
        samples = (measured_trainings if unit == "training" else measured_cells).get(kind, [])
        if samples:
            each, source = statistics.median(samples), "measured"
        else:
            reference = (
                MODEL_TRAINING_SECONDS if unit == "training" else MODEL_CELL_SECONDS.get(kind, MODEL_CELL_SECONDS_OTHER)
            )
            each, source = MODEL_UNIT_OVERHEAD_SECONDS + reference * scale, "model"
        items.append(
            {
                "unit": unit,
                "kind": kind,
                "count": count,
                "seconds_each": round(each, 4),
                "source": source,
                "samples": len(samples),
            }
        )
        total += each * count
        measured += each * count if samples else 0.0
    n_measured = sum(1 for i in items if i["source"] == "measured")
    if n_measured == len(items):
        basis = (
            f"Measured: every kind of unit is timed by the median of this project's past units of the same kind "
            f"on the same dataset, model and training settings ({len(similar)} past assessment(s))."
        )
    elif n_measured:
        basis = (
            f"Mixed: {n_measured} of {len(items)} kinds of unit timed from this project's past runs on the same "
            "dataset, model and training settings; the others by the per-kind model (census reference timings "
            f"scaled by training rows x epochs x parameters, here x{scale:.3g})."
        )
    else:
        basis = (
            "Per-kind model (no past run of this project on the same dataset, model and training settings): "
            "reference seconds per training and per risk/attack cell measured on census with a small MLP, scaled "
            f"by training rows x epochs x parameters (here x{scale:.3g}); an order of magnitude, not a promise."
        )
    return {
        "cells": len(cells),
        "trainings": len(training_keys),
        "seconds": round(total, 2),
        "measured_share": round(measured / total, 4) if total else 0.0,
        "basis": basis + " One worker; time waiting in the queue is not included.",
        "items": items,
    }
