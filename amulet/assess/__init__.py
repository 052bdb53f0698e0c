"""The interaction engine: assessment specs, the defense x risk matrix, policy verdicts and audit reports.

Typical use::

    from amulet.assess import load_spec, run_assessment
    results = run_assessment(load_spec("examples/census-quick.yaml"), out_dir="report")
    results.exit_code  # 0 pass, 1 a check failed, 2 error, 3 a check could not run

The same steps as independent units (what the worker fans out)::

    plan = plan_assessment(spec)
    for t in plan.trainings: run_training(plan, t.key, cache_dir=cache)
    cells = [run_cell(plan, c.key, cache_dir=cache) for c in plan.cells]  # reuses cached cell results
    results = aggregate_results(plan, cells)
    render_reports(results, "report")
"""

from __future__ import annotations

from amulet.assess._bundle import bundle_bytes, write_bundle
from amulet.assess._cache import ModelCache, training_counts
from amulet.assess._cell_cache import CellCache
from amulet.assess._data import DataBundle, architecture_spec, load_bundle
from amulet.assess._display import (
    COLOUR_SCALE,
    SATURATION,
    cell_colour,
    cell_label,
    format_change,
    format_interval,
    format_value,
)
from amulet.assess._plan import AssessmentPlan, PlannedCell, PlannedColumn, PlannedRow, PlannedTraining, plan_assessment
from amulet.assess._report import render_reports
from amulet.assess._results import (
    AccuracySummary,
    AssessmentResults,
    CellResult,
    CheckResult,
    MatrixCell,
    MetricSummary,
    ResultWarning,
    aggregate_results,
    results_json_schema,
)
from amulet.assess._runner import default_cache_dir, run_assessment, run_cell, run_training
from amulet.assess._signing import VerifyResult, sign_report, verify_report
from amulet.assess._spec import (
    AssessmentSpec,
    DatasetSpec,
    DefenseEntry,
    DefenseRow,
    ModelSpec,
    PolicyCheck,
    RiskEntry,
    SpecError,
    load_spec,
    spec_json_schema,
)

__all__ = [
    "AccuracySummary",
    "AssessmentPlan",
    "AssessmentResults",
    "AssessmentSpec",
    "COLOUR_SCALE",
    "CellCache",
    "CellResult",
    "CheckResult",
    "DataBundle",
    "DatasetSpec",
    "DefenseEntry",
    "DefenseRow",
    "MatrixCell",
    "MetricSummary",
    "ModelCache",
    "ModelSpec",
    "PlannedCell",
    "PlannedColumn",
    "PlannedRow",
    "PlannedTraining",
    "PolicyCheck",
    "ResultWarning",
    "RiskEntry",
    "SATURATION",
    "SpecError",
    "VerifyResult",
    "aggregate_results",
    "architecture_spec",
    "bundle_bytes",
    "cell_colour",
    "cell_label",
    "default_cache_dir",
    "format_change",
    "format_interval",
    "format_value",
    "load_bundle",
    "load_spec",
    "plan_assessment",
    "render_reports",
    "results_json_schema",
    "run_assessment",
    "run_cell",
    "run_training",
    "sign_report",
    "spec_json_schema",
    "training_counts",
    "verify_report",
    "write_bundle",
]
