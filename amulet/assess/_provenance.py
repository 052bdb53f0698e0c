"""Provenance of an assessment's results: library versions, hardware, and the hashes that pin what ran.

:func:`reproducibility_record` builds the ``reproducibility`` section of the results (spec, data and model
hashes, seeds, the libraries and hardware of the process that aggregated, and the time the cells took).
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from amulet.assess._plan import AssessmentPlan
from amulet.assess._schema import CellResult

__all__ = ["hardware_info", "library_versions", "reproducibility_record"]

#: Distributions whose versions the results record (those that can change a number or a report).
RECORDED_DISTRIBUTIONS = (
    "amulet-studio",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "opacus",
    "pydantic",
    "safetensors",
    "plotly",
    "weasyprint",
    "jinja2",
    "cryptography",
)


def library_versions() -> dict[str, str]:
    """Python's version and that of each installed distribution of :data:`RECORDED_DISTRIBUTIONS`."""
    out = {"python": platform.python_version()}
    for dist in RECORDED_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def hardware_info() -> dict[str, Any]:
    """Platform, CPU count, torch's thread count and the GPU (when CUDA is available)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        # Lazy for import cost: results are read and aggregated by the service and dashboard, which need not
        # load torch until provenance is captured.
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return info


def reproducibility_record(
    plan: AssessmentPlan, cells: Sequence[CellResult], trainings: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``reproducibility`` section of the results.

    Args:
        plan: The plan the cells came from.
        cells: Every cell's result (one per planned cell).
        trainings: Optional records of :func:`~amulet.assess.run_training` (model hashes, training kinds).

    Returns:
        ``seeds``, ``spec_sha256``, ``data_sha256``, ``model_sha256`` (training key -> weights hash),
        ``libraries``, ``hardware``, ``cell_seconds`` and, with ``trainings``, the count of trained, reused and
        imported models and the devices they were trained on.
    """
    spec = plan.spec
    model_hashes: dict[str, str] = {}
    training_of = {(t.row, t.seed): t.key for t in plan.trainings}
    for c in cells:
        if c.model_sha256:
            model_hashes[training_of[(c.row, c.seed)]] = c.model_sha256
    for t in trainings or ():
        if t.get("model_sha256"):
            model_hashes[t["key"]] = t["model_sha256"]
    data_sha = next((c.data_sha256 for c in cells if c.data_sha256), None)
    for t in trainings or ():
        data_sha = data_sha or t.get("data_sha256")
    reproducibility: dict[str, Any] = {
        "seeds": list(spec.seeds),
        "spec_sha256": hashlib.sha256(spec.canonical_json().encode()).hexdigest(),
        "data_sha256": data_sha,
        "model_sha256": dict(sorted(model_hashes.items())),
        "libraries": library_versions(),
        "hardware": hardware_info(),
        "cell_seconds": round(sum(c.seconds for c in cells), 3),
    }
    if trainings:
        kinds = [t.get("status") for t in trainings]
        reproducibility["trainings"] = {s: kinds.count(s) for s in ("trained", "reused", "imported")}
        reproducibility["devices"] = sorted({str(t.get("device")) for t in trainings if t.get("device")})
    return reproducibility
