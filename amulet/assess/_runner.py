"""Running an assessment: trainings and cells as independent, idempotent units, or everything in-process.

:func:`run_training` (:mod:`amulet.assess._training`) trains (or imports, or reuses from the
content-addressed cache) the model of one (row, seed). :func:`run_cell` (:mod:`amulet.assess._cell`) runs one
attack on one such model through the registry (``AttackInfo.run(ctx, params)``) and never raises for a
failing attack: a cell that structurally cannot apply (:class:`~amulet.exceptions.NotApplicableError`) is
``not_run`` with its reason; any other exception is ``error`` with the message. :func:`run_assessment`
(here) does it all in one process and renders the reports; the service runs the units as separate tasks.

Cancellation: a progress reporter stops a run by raising :class:`~amulet.exceptions.RunCancelledError` from
any of its calls. It is never recorded as a cell's error: every function here lets it propagate. Steps that
report no progress of their own (loading the data, building and checking the model, evaluating it) are
framed by progress events, so a cancellation is seen before and after each of them.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

import torch

from amulet.assess._cell import run_cell
from amulet.assess._data import load_bundle
from amulet.assess._plan import plan_assessment
from amulet.assess._report import render_reports
from amulet.assess._results import AssessmentResults, CellResult, aggregate_results
from amulet.assess._spec import AssessmentSpec, load_spec
from amulet.assess._training import default_cache_dir, resolve_torch_device, run_training
from amulet.exceptions import NotApplicableError
from amulet.progress import Progress, resolve_progress
from amulet.utils import configure_threads

__all__ = ["default_cache_dir", "run_assessment", "run_cell", "run_training"]

logger = logging.getLogger(__name__)


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
    configure_threads()
    spec = load_spec(spec)
    plan = plan_assessment(spec)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = resolve_torch_device(device)
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
        render_reports(aggregated, out_dir, formats=formats)
    return aggregated
