"""Running an assessment: trainings and cells as independent, idempotent units, or everything in-process.

:func:`run_training` trains (or imports, or reuses from the content-addressed cache) the model of one
(row, seed). :func:`run_cell` runs one attack on one such model through the registry
(``AttackInfo.run(ctx, params)``) and never raises for a failing attack: a cell that structurally cannot
apply (:class:`~amulet.exceptions.NotApplicableError`) is ``not_run`` with its reason; any other exception
is ``error`` with the message. :func:`run_assessment` does it all in one process and renders the reports.

Cancellation: a progress reporter stops a run by raising :class:`~amulet.exceptions.RunCancelledError` from
any of its calls. It is never recorded as a cell's error: every function here lets it propagate. Steps that
report no progress of their own (loading the data, building and checking the model, evaluating it) are
framed by progress events, so a cancellation is seen before and after each of them.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from amulet.assess._cache import ModelCache, file_sha256
from amulet.assess._cache import _count as _count_training
from amulet.assess._cell_cache import CellCache
from amulet.assess._data import (
    architecture_spec,
    load_bundle,
    make_model_factory,
    split_for_seed,
    split_indices,
    tensor_sha256,
)
from amulet.assess._plan import AssessmentPlan, plan_assessment
from amulet.assess._results import (
    ACCURACY_KEY,
    MAJORITY_KEY,
    P_VALUE_KEY,
    TOP_CLASS_KEY,
    AssessmentResults,
    CellResult,
    aggregate_results,
)
from amulet.assess._spec import AssessmentSpec, load_spec
from amulet.exceptions import NotApplicableError, RunCancelledError
from amulet.progress import Progress, resolve_progress
from amulet.registry import AttackOutput, RocCurve, VulnerableRecord

__all__ = ["default_cache_dir", "run_assessment", "run_cell", "run_training"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``<artifact dir>/cache`` from the settings."""
    from amulet.settings import get_settings

    return get_settings().resolved_artifact_dir / "cache"


class _Step:
    """Frames a step that reports no progress of its own with a start and a finish event (both
    cancellation checkpoints: a reporter may raise :class:`RunCancelledError` from either)."""

    def __init__(self, progress: Progress, key: str, description: str) -> None:
        self.progress, self.key, self.description = progress, key, description

    def __enter__(self) -> None:
        self.progress.start(self.key, None, self.description)

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        if exc_type is None:  # an error of the step itself is reported, not masked by a checkpoint
            self.progress.finish(self.key)


def _device(device: torch.device | str | None) -> torch.device:
    from amulet.utils._seeding import resolve_device

    return resolve_device(device)


def _import_weights(arch: dict[str, Any], weights: str, factory: Any) -> torch.nn.Module:
    """The user's trained model through ``amulet.io`` (checked against the architecture; never unpickled):
    safetensors weights of a registered architecture, or an uploaded graph (``model.file``) as deployed."""
    from amulet.assess._data import GRAPH_ARCHITECTURE, load_graph_template

    if arch["architecture"] == GRAPH_ARCHITECTURE:
        return load_graph_template(arch)
    from amulet.io import load_model

    return load_model(arch, weights)


def _cache_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The architecture spec as the model cache keys it: an uploaded graph by its SHA-256, not its path."""
    return {k: v for k, v in arch.items() if k != "file"}


#: The utility figures a training records (record / model-cache sidecar key -> cell metric key).
UTILITY_FIELDS = {
    "test_accuracy": ACCURACY_KEY,
    "majority_rate": MAJORITY_KEY,
    "top_class_share": TOP_CLASS_KEY,
    "accuracy_p_value": P_VALUE_KEY,
}


def _evaluate(model: torch.nn.Module, data: Any, device: torch.device) -> dict[str, Any]:
    """The model's utility on the test rows (:func:`amulet.utils.check_utility`), as record fields."""
    from amulet.utils._evaluation import predict_logits
    from amulet.utils._utility import check_utility

    utility = check_utility(data.y, predict_logits(model, data.x, device=device).argmax(1))
    if utility.degenerate:
        logger.warning("the model is degenerate on the %d test rows: %s", utility.n, utility.reason)
    return {
        "test_accuracy": utility.accuracy,
        "majority_rate": utility.majority_rate,
        "top_class_share": utility.top_class_share,
        "accuracy_p_value": utility.p_value,
        "degenerate": utility.degenerate,
        "degenerate_reason": utility.reason,
    }


def run_training(
    plan: AssessmentPlan,
    training_key: str,
    *,
    cache_dir: str | Path,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the model of one (row, seed) of ``plan`` unless the cache already holds it (idempotent).

    Args:
        plan: The assessment plan.
        training_key: ``plan.trainings[i].key``.
        cache_dir: Content-addressed cache directory (shared by every run and worker).
        device: Torch device (default: the settings' device).
        progress: Progress reporter (training reports task ``"train"``).

    Returns:
        A JSON-able record: ``key``, ``row``, ``seed``, ``status`` (``"trained"``, ``"reused"`` or
        ``"imported"``), ``cache_key``, ``model_sha256``, ``data_sha256``, the utility check on the test
        rows (``test_accuracy``, ``majority_rate``, ``top_class_share`` in %, ``accuracy_p_value``,
        ``degenerate``, ``degenerate_reason``; a reused model whose sidecar predates them is evaluated
        again and its sidecar completed), ``model_attributes``, ``seconds``, ``device``.

    Raises:
        KeyError: unknown training key. Errors of data loading or training propagate.
        RunCancelledError: ``progress`` cancelled the run.
    """
    training = plan.training(training_key)
    device = _device(device)
    progress = resolve_progress(progress)
    start = time.perf_counter()
    with _Step(progress, "data", "loading the data"):
        bundle = load_bundle(plan.spec.dataset)
        member, _ = split_for_seed(bundle, training.seed, plan.spec.dataset.member_fraction)
    arch = architecture_spec(plan.spec.model, bundle)
    factory = make_model_factory(arch)
    recipe = plan.recipe(training.row)
    uploaded = plan.spec.model.weights or plan.spec.model.file
    weights = uploaded if recipe.is_plain else None
    if weights and plan.spec.model.file:
        recipe_part = f"uploaded-graph:{arch['config']['sha256']}"
    else:
        recipe_part = f"weights:{file_sha256(weights)}" if weights else recipe.key
    cache = ModelCache(cache_dir)
    cache_key = ModelCache.make_key(
        _cache_arch(arch), recipe_part, tensor_sha256(member.x, member.y, member.z), training.seed
    )
    record = {
        "key": training_key,
        "row": training.row,
        "seed": training.seed,
        "cache_key": cache_key,
        "data_sha256": bundle.sha256,
        "device": str(device),
    }
    if cache.has(cache_key):
        meta = cache.meta(cache_key)
        if any(meta.get(name) is None for name in UTILITY_FIELDS):
            # A model cached before the utility check existed: measure it now, once.
            model = cache.load(cache_key, recipe.architecture(factory), device)
            meta = cache.update_meta(cache_key, _evaluate(model, bundle.test, device))
        _count_training("reused")
        logger.info("training %s: reused %s", training_key, cache_key[:12])
        return {
            **record,
            "status": "reused",
            "model_sha256": meta["weights_sha256"],
            **{name: meta.get(name) for name in (*UTILITY_FIELDS, "degenerate", "degenerate_reason")},
            "model_attributes": meta.get("model_attributes", {}),
            "seconds": round(time.perf_counter() - start, 3),
        }
    if weights:
        with _Step(progress, "import", "loading the uploaded model"):
            model = _import_weights(arch, weights, factory).to(device).eval()
        status = "imported"
    else:
        model = recipe.train(factory, member, seed=training.seed, device=device, progress=progress)
        status = "trained"
        with _Step(progress, "structure", "checking the trained model against its architecture"):
            _check_structure(model, recipe.architecture(factory), recipe.name)
    with _Step(progress, "evaluate", "measuring the model's utility on the test rows"):
        utility = _evaluate(model, bundle.test, device)
    accuracy = utility["test_accuracy"]
    attributes = _model_attributes(model)
    seconds = round(time.perf_counter() - start, 3)
    meta = cache.save(
        cache_key,
        model,
        {
            "architecture": arch,
            "recipe": recipe_part,
            "row": training.row,
            "seed": training.seed,
            "data_sha256": bundle.sha256,
            **utility,
            "train_seconds": seconds,
            "status": status,
            "member_rows": len(member),
            "model_attributes": attributes,
        },
    )
    _count_training(status)
    logger.info("training %s: %s in %.1fs, test accuracy %.2f%%", training_key, status, seconds, accuracy)
    return {
        **record,
        "status": status,
        "model_sha256": meta["weights_sha256"],
        **utility,
        "model_attributes": attributes,
        "seconds": seconds,
    }


def _check_structure(model: torch.nn.Module, structure: Any, recipe_name: str) -> None:
    """Fail clearly when trained weights would not load back into the recipe's declared architecture."""
    try:
        structure().load_state_dict(model.state_dict())
    except RuntimeError as exc:
        raise ValueError(
            f"The model trained by the recipe {recipe_name!r} does not fit the architecture it declares, so it "
            f"cannot be cached and reloaded: {str(exc).splitlines()[0]} {' '.join(str(exc).split())[:300]}. A defense "
            "that changes the model's structure must say how with its stage's 'adapt_model'."
        ) from None


def _model_attributes(model: torch.nn.Module) -> dict[str, float]:
    """Public numeric attributes a defense left on the model (e.g. ``privacy_epsilon_``), for the report."""
    out = {}
    for name, value in vars(model).items():
        if (
            name.endswith("_")
            and not name.startswith("_")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            out[name.rstrip("_")] = float(value)
    return out


def run_cell(
    plan: AssessmentPlan,
    cell_key: str,
    *,
    cache_dir: str | Path,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    reuse_cells: bool | None = None,
) -> CellResult:
    """Run one cell: the column's attack against the model of the cell's row and seed.

    The model comes from the cache (trained first when missing). The attack gets a
    :class:`~amulet.registry.CellContext` with the member rows, the adversary's rows, the test rows, the
    recipe and the cache directory. Never raises for a failing attack.

    An ``"ok"`` result is stored in the cell cache (:class:`~amulet.assess.CellCache`, under
    ``<cache_dir>/cells/``), and a later call whose inputs are all unchanged (model weights, data, attack and
    parameters, device, library versions, code) returns it without running the attack, with ``cached=True``,
    ``seconds`` the time of this call and ``computed_seconds`` the time of the call that computed it.

    Args:
        plan: The assessment plan.
        cell_key: ``plan.cells[i].key``.
        cache_dir: Content-addressed cache directory (models and cell results; shared by every run and worker).
        device: Torch device (default: the settings' device).
        progress: Progress reporter (the attack reports task ``"cell/<key>"``).
        reuse_cells: Reuse a cached result when one exists; ``False`` always runs the attack (its ``"ok"``
            result is still stored); ``None`` (default) follows the ``cell_cache`` setting (``AMULET_CELL_CACHE``).

    Returns:
        A :class:`CellResult` with ``status`` ``"ok"``, ``"not_run"`` (reason: why it cannot apply) or
        ``"error"`` (reason: the exception). OK metrics include every headline metric of the risk (NaN =
        not measured) and the model's clean test accuracy under ``"model.test_accuracy"``.

    Raises:
        KeyError: unknown cell key.
        RunCancelledError: ``progress`` cancelled the run (never recorded as the cell's error).
    """
    from amulet import registry
    from amulet.registry import CellContext

    cell = plan.cell(cell_key)
    column = plan.column(cell.risk, cell.attack)
    device = _device(device)
    progress = resolve_progress(progress)
    if reuse_cells is None:
        from amulet.settings import get_settings

        reuse_cells = get_settings().cell_cache
    start = time.perf_counter()
    model_sha = data_sha = None
    cell_cache, cache_key = CellCache(cache_dir), None
    # The model's own figures: recorded in every cell of a trained model, whatever the attack does.
    model_metrics: dict[str, float] = {}
    roc: RocCurve | None = None
    exposed: list[VulnerableRecord] = []
    try:
        training = run_training(plan, cell.training_key, cache_dir=cache_dir, device=device, progress=progress)
        model_sha, data_sha = training["model_sha256"], training["data_sha256"]
        model_metrics = _model_metrics(training)
        bundle = load_bundle(plan.spec.dataset)
        arch = architecture_spec(plan.spec.model, bundle)
        attack = registry.get_attack(cell.attack)
        cache_key = _cell_cache_key(plan, cell.key, arch, training, device)
        if reuse_cells and cache_key is not None:
            hit = _cached_cell(cell_cache, cache_key, cell.key, model_sha, data_sha)
            if hit is not None:
                return hit.model_copy(
                    update={
                        # The model's figures come from its training record (a cell cached before a
                        # figure existed still reports it).
                        "metrics": {**hit.metrics, **model_metrics},
                        "cached": True,
                        "computed_seconds": hit.seconds,
                        "seconds": round(time.perf_counter() - start, 3),
                    }
                )
        member_index, adversary_index = split_indices(bundle, cell.seed, plan.spec.dataset.member_fraction)
        member, adversary = bundle.train.subset(member_index), bundle.train.subset(adversary_index)
        factory = make_model_factory(arch)
        recipe = plan.recipe(cell.row)
        target = ModelCache(cache_dir).load(training["cache_key"], recipe.architecture(factory), device)
        for p in target.parameters():
            p.requires_grad_(True)
        params = attack.params(**column.params)
        ctx = CellContext(
            target=target,
            model_factory=factory,
            recipe=recipe,
            dataset=bundle.dataset,
            member=member,
            adversary=adversary,
            test=bundle.test,
            seed=cell.seed,
            device=device,
            cache_dir=Path(cache_dir),
            progress=progress,
            defense_keys=recipe.defense_keys,
            input_shape=bundle.input_shape,
            clip_range=bundle.clip_range,
            member_index=member_index,
        )
        progress.start(f"cell/{cell.key}", None, f"{cell.row} x {cell.risk} (seed {cell.seed})")
        try:
            raw = attack.run(ctx, params)
        finally:
            progress.finish(f"cell/{cell.key}")
        output = _check_output(raw, cell.risk, cell.attack)
        metrics = {**output.metrics, **model_metrics}
        roc, exposed = output.roc, list(output.vulnerable_records)
        status, reason = "ok", ""
    except RunCancelledError:
        raise  # a cancellation stops the run; it is not this cell's result
    except NotApplicableError as exc:
        status, reason, metrics = "not_run", str(exc) or type(exc).__name__, dict(model_metrics)
        logger.info("cell %s not run: %s", cell.key, reason)
    except Exception as exc:
        status, reason, metrics = "error", f"{type(exc).__name__}: {exc}", dict(model_metrics)
        logger.warning("cell %s failed: %s\n%s", cell.key, reason, traceback.format_exc())
    result = CellResult(
        key=cell.key,
        row=cell.row,
        risk=cell.risk,
        attack=cell.attack,
        seed=cell.seed,
        status=status,  # type: ignore[arg-type]
        metrics=metrics,
        roc=roc if status == "ok" else None,
        vulnerable_records=exposed if status == "ok" else [],
        reason=reason,
        seconds=round(time.perf_counter() - start, 3),
        model_sha256=model_sha,
        data_sha256=data_sha,
    )
    if cache_key is not None:
        cell_cache.put(cache_key, result)  # only "ok" results are stored
    return result


def _model_metrics(training: dict[str, Any]) -> dict[str, float]:
    """``model.*`` metrics of a training record: its utility figures and the attributes its defense left."""
    out = {}
    for name, key in UTILITY_FIELDS.items():
        value = training.get(name)
        out[key] = float(value) if value is not None else math.nan
    for name, value in (training.get("model_attributes") or {}).items():
        out[f"model.{name}"] = float(value)
    return out


def _cell_cache_key(
    plan: AssessmentPlan, cell_key: str, arch: dict[str, Any], training: dict[str, Any], device: torch.device
) -> str | None:
    """The cell-cache key of a cell (None: not cacheable, or the key could not be computed; logged)."""
    from amulet import registry
    from amulet.assess._data import GRAPH_ARCHITECTURE
    from amulet.models import get_architecture

    cell = plan.cell(cell_key)
    try:
        if arch["architecture"] == GRAPH_ARCHITECTURE:
            from amulet.io import GraphModel, reinitialize_parameters

            # The graph itself is identified by its SHA-256 (in the training record's model hash and the plan).
            model_code: list[Callable[..., Any]] = [GraphModel.forward, GraphModel.train, reinitialize_parameters]
        else:
            model_code = [get_architecture(arch["architecture"]).factory]
        code: list[Callable[..., Any]] = [
            registry.get_attack(cell.attack).run,
            *model_code,
            *(registry.get_defense(e["defense"]).make_stage for e in plan.row(cell.row).stack),
        ]
        return CellCache.make_key(
            plan,
            cell_key,
            model_sha256=training["model_sha256"],
            data_sha256=training["data_sha256"],
            device=device,
            code=code,
        )
    except Exception as exc:  # the cache must never fail a cell: compute it uncached
        logger.warning("cell %s: no cell-cache key (%s: %s); computing it uncached", cell_key, type(exc).__name__, exc)
        return None


def _cached_cell(cache: CellCache, key: str, cell_key: str, model_sha: str, data_sha: str) -> CellResult | None:
    """The cached result of ``key`` when it is the result of this cell on this model and data, else None."""
    hit = cache.get(key)
    if hit is None:
        return None
    if (hit.key, hit.model_sha256, hit.data_sha256) != (cell_key, model_sha, data_sha):
        logger.warning("cell %s: the cached entry %s is another cell's result; recomputing", cell_key, key[:12])
        return None
    logger.info("cell %s: reused the cached result %s", cell_key, key[:12])
    return hit


def _check_output(raw: Any, risk_key: str, attack_key: str) -> AttackOutput:
    """An adapter's return value as an :class:`~amulet.registry.AttackOutput` with checked metrics."""
    if isinstance(raw, AttackOutput):
        return raw.model_copy(update={"metrics": _check_metrics(raw.metrics, risk_key, attack_key)})
    return AttackOutput(metrics=_check_metrics(raw, risk_key, attack_key))


def _check_metrics(raw: Any, risk_key: str, attack_key: str) -> dict[str, float]:
    from amulet import registry

    if not isinstance(raw, dict):
        raise TypeError(
            f"The adapter of attack {attack_key!r} returned {type(raw).__name__}, not a dict of metrics "
            "or an AttackOutput."
        )
    metrics: dict[str, float] = {}
    for key, value in raw.items():
        try:
            metrics[str(key)] = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            raise TypeError(
                f"The adapter of attack {attack_key!r} returned a non-numeric value for {key!r}: {value!r}."
            ) from None
    missing = [m.key for m in registry.get_risk(risk_key).headline_metrics if m.key not in metrics]
    if missing:
        raise ValueError(
            f"The adapter of attack {attack_key!r} did not return the headline metric(s) {missing} of the risk "
            f"{risk_key!r} (return NaN for a metric it cannot measure)."
        )
    return metrics


def run_assessment(
    spec: AssessmentSpec | dict[str, Any] | str | Path,
    *,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    formats: tuple[str, ...] = ("html", "pdf", "json", "junit"),
    reuse_cells: bool | None = None,
) -> AssessmentResults:
    """Run a whole assessment in this process: every training, every cell, then the reports.

    Torch's intra-op thread count is set from the ``num_threads`` setting first
    (:func:`amulet.utils.configure_threads`).

    Args:
        spec: An :class:`AssessmentSpec` or anything :func:`load_spec` accepts.
        out_dir: Where to write the reports (none are written when ``None``).
        cache_dir: Model and cell-result cache (default: ``<artifact dir>/cache``).
        device: Torch device (default: the settings' device).
        progress: Progress reporter; task ``"assessment"`` counts trainings + cells and carries the ETA.
        formats: Report formats to render into ``out_dir``.
        reuse_cells: Reuse cached cell results (see :func:`run_cell`); ``False`` recomputes every cell;
            ``None`` (default) follows the ``cell_cache`` setting.

    Returns:
        The :class:`AssessmentResults` (``results.exit_code`` is the CLI's exit code).

    Raises:
        SpecError: the spec is invalid. Dataset errors (missing source, bad file) propagate before any cell runs.
    """
    from amulet.utils._threads import configure_threads

    configure_threads()
    spec = load_spec(spec)
    plan = plan_assessment(spec)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = _device(device)
    progress = resolve_progress(progress)
    load_bundle(spec.dataset)  # bad data fails here, before anything trains
    total = len(plan.trainings) + len(plan.cells)
    progress.start("assessment", total, f"{spec.name}: {len(plan.trainings)} models, {len(plan.cells)} cells")
    trainings: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for training in plan.trainings:
        try:
            trainings.append(run_training(plan, training.key, cache_dir=cache_dir, device=device, progress=progress))
        except NotApplicableError as exc:
            failed[training.key] = f"not_run:{exc}"
        except Exception as exc:
            logger.warning("training %s failed: %s\n%s", training.key, exc, traceback.format_exc())
            failed[training.key] = f"error:{type(exc).__name__}: {exc}"
        progress.advance("assessment", row=training.row, seed=training.seed)
    results: list[CellResult] = []
    for cell in plan.cells:
        if cell.training_key in failed:
            kind, _, message = failed[cell.training_key].partition(":")
            results.append(
                CellResult(
                    key=cell.key,
                    row=cell.row,
                    risk=cell.risk,
                    attack=cell.attack,
                    seed=cell.seed,
                    status="not_run" if kind == "not_run" else "error",
                    reason=f"training the model of {cell.row!r} failed: {message}",
                )
            )
        else:
            results.append(
                run_cell(plan, cell.key, cache_dir=cache_dir, device=device, progress=progress, reuse_cells=reuse_cells)
            )
        progress.advance("assessment", cell=f"{cell.row} x {cell.risk}", status=results[-1].status)
    progress.finish("assessment")
    aggregated = aggregate_results(plan, results, trainings=trainings)
    if out_dir is not None:
        from amulet.assess._report import render_reports

        render_reports(aggregated, out_dir, formats=formats)
    return aggregated
