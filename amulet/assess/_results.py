"""Results of an assessment: the names this module held before it was split, re-exported (no logic here).

The results were one module; they now live in :mod:`amulet.assess._schema` (the models and the versioned
JSON schema), :mod:`amulet.assess._aggregate` (:func:`aggregate_results`), :mod:`amulet.assess._policy`
(verdicts) and :mod:`amulet.assess._provenance` (environment capture). Import public names from
:mod:`amulet.assess`; this module keeps the old import path of the engine's runner and cell cache working.
"""

from __future__ import annotations

from amulet.assess._aggregate import aggregate_results
from amulet.assess._schema import (
    ACCURACY_KEY,
    MAJORITY_KEY,
    P_VALUE_KEY,
    READABLE_SCHEMA_VERSIONS,
    RESULTS_SCHEMA_VERSION,
    TOP_CLASS_KEY,
    UTILITY_KEYS,
    AccuracySummary,
    AssessmentResults,
    CellResult,
    CheckResult,
    ColumnInfo,
    MatrixCell,
    MetricSummary,
    ResultWarning,
    RowInfo,
    results_json_schema,
)

__all__ = [
    "ACCURACY_KEY",
    "MAJORITY_KEY",
    "P_VALUE_KEY",
    "READABLE_SCHEMA_VERSIONS",
    "RESULTS_SCHEMA_VERSION",
    "TOP_CLASS_KEY",
    "UTILITY_KEYS",
    "AccuracySummary",
    "AssessmentResults",
    "CellResult",
    "CheckResult",
    "ColumnInfo",
    "MatrixCell",
    "MetricSummary",
    "ResultWarning",
    "RowInfo",
    "aggregate_results",
    "results_json_schema",
]
