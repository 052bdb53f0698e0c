"""The cost estimate of a planned assessment: the median seconds of this project's past units of the same
workload, else per-kind reference seconds scaled by the data and model size (:func:`estimate_cost`)."""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import Any

from sqlalchemy.orm import Session

from backend import crud
from backend.planning.preflight import PreflightInfo

__all__ = [
    "HISTORY_ASSESSMENTS",
    "MODEL_CELL_SECONDS",
    "MODEL_CELL_SECONDS_OTHER",
    "MODEL_REFERENCE",
    "MODEL_TRAINING_SECONDS",
    "MODEL_UNIT_OVERHEAD_SECONDS",
    "estimate_cost",
    "training_kind",
    "workload_digest",
]


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
