"""Running one cell of an assessment: one attack against the model of one (row, seed).

:func:`run_cell` never raises for a failing attack: a cell that structurally cannot apply
(:class:`~amulet.exceptions.NotApplicableError`) is ``not_run`` with its reason; any other exception is
``error`` with the message; a cancellation (:class:`~amulet.exceptions.RunCancelledError`) propagates. An
adapter's output is checked (numeric metrics, every headline metric of the risk) before it becomes a
:class:`CellResult`, and ``"ok"`` results go to the cell cache (:class:`~amulet.assess.CellCache`).
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

from amulet import registry
from amulet.assess._cache import ModelCache
from amulet.assess._cell_cache import CellCache
from amulet.assess._data import GRAPH_ARCHITECTURE, architecture_spec, load_bundle, make_model_factory, split_indices
from amulet.assess._plan import AssessmentPlan
from amulet.assess._results import CellResult
from amulet.assess._training import UTILITY_FIELDS, resolve_torch_device, run_training
from amulet.exceptions import NotApplicableError, RunCancelledError
from amulet.io import GraphModel, reinitialize_parameters
from amulet.models import get_architecture
from amulet.progress import Progress, resolve_progress
from amulet.registry import AttackOutput, CellContext, RocCurve, VulnerableRecord
from amulet.settings import get_settings

__all__ = ["run_cell"]

logger = logging.getLogger(__name__)


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
    cell = plan.cell(cell_key)
    column = plan.column(cell.risk, cell.attack)
    device = resolve_torch_device(device)
    progress = resolve_progress(progress)
    if reuse_cells is None:
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
    cell = plan.cell(cell_key)
    try:
        if arch["architecture"] == GRAPH_ARCHITECTURE:
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
