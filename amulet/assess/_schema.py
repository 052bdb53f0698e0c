"""The results file's schema: every model an assessment's results are made of, and reading older versions.

:class:`AssessmentResults` is the object every report is rendered from; its JSON form is versioned
(:data:`RESULTS_SCHEMA_VERSION`, :func:`results_json_schema`) and files of every version in
:data:`READABLE_SCHEMA_VERSIONS` read back (older files get the newer fields derived or defaulted).
:func:`~amulet.assess.aggregate_results` (:mod:`amulet.assess._aggregate`) fills these models.

Conventions: a metric value of NaN means "not measured" (written as ``null`` in JSON); see
:mod:`amulet.assess._aggregate` for how summaries, directions and statuses are derived.

The file is longer than most (about 500 lines) on purpose: it is one versioned format whose models refer to
each other, and the upgrade of older files and the strength attached to each column read all of them; split,
a reader would have to assemble the format from several files to know what one version holds.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from amulet.assess._strength import AttackStrength, attack_strength
from amulet.registry import RocCurve, VulnerableRecord

__all__ = [
    "ACCURACY_KEY",
    "ACCURACY_RANGE",
    "MAJORITY_KEY",
    "MIN_SEEDS",
    "MODEL_PREFIX",
    "P_VALUE_KEY",
    "READABLE_SCHEMA_VERSIONS",
    "RESULTS_SCHEMA_VERSION",
    "SIGNIFICANT_DIRECTIONS",
    "TOP_CLASS_KEY",
    "UTILITY_KEYS",
    "attach_strength",
    "AccuracySummary",
    "AssessmentResults",
    "CellResult",
    "CheckResult",
    "ColumnInfo",
    "DeltaSummary",
    "Direction",
    "MatrixCell",
    "MetricSummary",
    "ResultWarning",
    "RowInfo",
    "StatFields",
    "few_seeds_warning",
    "results_json_schema",
]

RESULTS_SCHEMA_VERSION = "1.3"
#: Every schema version this module reads (older files get the newer fields derived or defaulted; 1.2 added
#: each cell's ``roc`` and ``vulnerable_records``; 1.3 each cell's and column's ``strength``, each matrix cell's
#: ``weak_budget`` and the ``weak_budget`` warning, which :func:`attach_strength` derives for older files).
READABLE_SCHEMA_VERSIONS = ("1.0", "1.1", "1.2", "1.3")

#: Metric key under which a cell records the clean test accuracy (%) of the model it measured.
ACCURACY_KEY = "model.test_accuracy"
#: % of the test rows in the test set's most frequent class (what a constant model scores).
MAJORITY_KEY = "model.majority_rate"
#: % of the model's test predictions that go to its single most-predicted class.
TOP_CLASS_KEY = "model.top_class_share"
#: One-sided exact binomial p-value of "test accuracy > majority rate".
P_VALUE_KEY = "model.accuracy_p_value"
#: The per-model utility keys (not defense properties).
UTILITY_KEYS = (ACCURACY_KEY, MAJORITY_KEY, TOP_CLASS_KEY, P_VALUE_KEY)
#: Metric key of a thresholded attack's cell: 1.0 when it decided every target the same way (distribution
#: inference reports it), so that its accuracy is one population's share whatever its scores.
ONE_SIDED_KEY = "one_sided"
#: Range of clean accuracy (%).
ACCURACY_RANGE = (0.0, 100.0)
#: Directions that count as a significant change.
SIGNIFICANT_DIRECTIONS = ("more_susceptible", "less_susceptible")
#: Prefix of per-model values (accuracy, values a defense recorded on the model) inside a cell's metrics.
MODEL_PREFIX = "model."

Direction = Literal[
    "more_susceptible", "less_susceptible", "no_significant_change", "insufficient_data", "not_measured"
]


class CellResult(BaseModel):
    """The outcome of one cell (one attack on one model of one seed).

    Attributes:
        key: The cell's stable key (from the plan).
        row, risk, attack, seed: What was measured.
        status: ``"ok"``, ``"not_run"`` (structurally not applicable; ``reason`` says why) or ``"error"``.
        metrics: Metric key -> value (NaN = not measured); headline metrics plus any extras.
        reason: Why the cell did not run, or the error message.
        seconds: Wall time of the cell in this run (for a reused cell: the cache lookup).
        model_sha256: SHA-256 of the measured model's weights file (when known).
        data_sha256: SHA-256 of the assessment's data (when known).
        cached: True when the result was reused from the cell cache instead of computed in this run.
        computed_seconds: For a reused cell, the wall time of the run that computed it; ``None`` otherwise.
        roc: The ROC curve of the attack's scores (membership inference), when the attack yields one.
        vulnerable_records: The training records the attack exposed most (highest membership scores).
        strength: The budget the attack ran with (shadows, models, steps, queries) and whether it is weak
            (:func:`~amulet.assess._strength.attack_strength`); ``None`` for a cell that did not run or an
            attack without parameters.
    """

    model_config = ConfigDict(extra="ignore")

    key: str
    row: str
    risk: str
    attack: str
    seed: int
    status: Literal["ok", "not_run", "error"]
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0
    model_sha256: str | None = None
    data_sha256: str | None = None
    cached: bool = False
    computed_seconds: float | None = None
    roc: RocCurve | None = None
    vulnerable_records: list[VulnerableRecord] = Field(default_factory=list)
    strength: AttackStrength | None = None

    @field_validator("metrics", mode="before")
    @classmethod
    def _none_is_nan(cls, value: Any) -> Any:
        # JSON has no NaN: "not measured" is written as null and read back as NaN.
        if isinstance(value, dict):
            return {k: math.nan if v is None else v for k, v in value.items()}
        return value


class StatFields(BaseModel):
    """Per-seed values with their summary."""

    values: dict[int, float] = Field(default_factory=dict, description="seed -> value (finite values only)")
    n: int = 0
    mean: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


class DeltaSummary(BaseModel):
    """Paired change against the baseline (same seeds)."""

    n: int = 0
    mean: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None


class MetricSummary(StatFields):
    """One (row, risk, attack, metric) over seeds."""

    row: str
    risk: str
    attack: str
    metric: str
    name: str
    unit: str = ""
    headline: bool = True
    higher_is_riskier: bool | None = None
    intended: bool = False
    delta: DeltaSummary | None = None
    direction: Direction = "not_measured"
    susceptibility_change: float | None = Field(
        default=None, description="delta signed so that > 0 means more susceptible (metric units)"
    )


class AccuracySummary(StatFields):
    """Clean test accuracy (%) of one row's models, with the cost against the baseline: the utility check.

    ``properties`` holds the mean of numeric values the defense recorded on its models (e.g.
    ``privacy_epsilon`` and ``privacy_delta`` of DP-SGD), over seeds.

    ``status`` is ``"degenerate"`` when the model of any seed is degenerate
    (:func:`amulet.utils.check_utility`: top-class share >= 98 % or accuracy not significantly above the
    majority rate), ``"failed"`` when no model of the row could be measured because of errors, ``"ok"``
    otherwise; ``reason`` says why.
    """

    row: str
    delta: DeltaSummary | None = None
    properties: dict[str, float] = Field(default_factory=dict)
    majority_rate: float | None = Field(default=None, description="% of test rows in the most frequent class")
    top_class_share: float | None = Field(
        default=None, description="% of test predictions in the most-predicted class (worst seed)"
    )
    accuracy_p_value: float | None = Field(
        default=None, description="one-sided binomial p of accuracy > majority rate (worst seed)"
    )
    degenerate_seeds: list[int] = Field(default_factory=list)
    status: Literal["ok", "degenerate", "failed"] = "ok"
    reason: str = ""


class RowInfo(BaseModel):
    """A row of the matrix."""

    name: str
    stack: list[dict[str, Any]] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)


class ColumnInfo(BaseModel):
    """A column of the matrix, with what reports show about it."""

    risk: str
    attack: str
    label: str
    risk_name: str
    risk_code: str
    category: str
    risk_description: str
    attack_name: str
    attack_code: str
    attack_summary: str = ""
    attack_reference: str = ""
    params: dict[str, Any] = Field(default_factory=dict, description="Attack parameters as used (defaults filled).")
    threat_model: dict[str, str] = Field(default_factory=dict)
    headline_metrics: list[dict[str, Any]] = Field(default_factory=list)
    primary_metric: str
    strength: AttackStrength | None = Field(
        default=None,
        description="The budget the column's attack ran with (from its ok cells; 'varies' when they differ).",
    )


class MatrixCell(BaseModel):
    """One heatmap cell: the column's primary metric for one defense row.

    ``status``: ``"ok"``, ``"degenerate"`` (the row's model or the baseline is degenerate: the numbers are
    kept but mean nothing), ``"error"`` or ``"not_run"``; ``reason`` says why. ``significant``: an ``ok``
    cell whose paired test across seeds is significant at 5%.
    """

    row: str
    column: str
    risk: str
    attack: str
    metric: str
    intended: bool
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    baseline: float | None = None
    delta: float | None = None
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    susceptibility_change: float | None = Field(default=None, description="Scaled to fractions (% / 100).")
    direction: Direction = "not_measured"
    status: Literal["ok", "degenerate", "error", "not_run"] = "ok"
    reason: str = ""
    significant: bool = False
    unit: str = Field(default="", description="The metric's unit ('%' or '')")
    weak_budget: bool = Field(
        default=False,
        description="The column's attack ran with a weak budget: the cell cannot resolve small effects and is "
        "never a finding (see the column's strength).",
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_significant(cls, data: Any) -> Any:
        # Schema 1.0 cells carry no "significant": it is what their direction said.
        if isinstance(data, dict) and "significant" not in data:
            data = {
                **data,
                "significant": data.get("status", "ok") == "ok" and data.get("direction") in SIGNIFICANT_DIRECTIONS,
            }
        return data


class ResultWarning(BaseModel):
    """Something a reader must know before trusting the numbers (shown at the top of every report).

    ``code``: ``"few_seeds"``, ``"baseline_degenerate"``, ``"baseline_failed"``, ``"row_degenerate"``,
    ``"cell_errors"``, ``"budget_exceeded"``, ``"weak_budget"`` (an attack ran with a budget too small to
    resolve small effects) or ``"one_sided_decisions"`` (a thresholded attack decided every target the same
    way: its accuracy is not a measure of the attack); ``row``: the row it concerns (``None``: the assessment).
    """

    code: str
    message: str
    row: str | None = None


class CheckResult(BaseModel):
    """A policy verdict for one (check, row, attack)."""

    id: str
    metric: str
    risk: str
    attack: str
    row: str
    op: str
    threshold: float
    on: Literal["value", "delta"]
    status: Literal["pass", "fail", "inconclusive", "not_run"]
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    unit: str = ""
    message: str
    intended: bool = False
    clauses: list[str] = Field(default_factory=list)


class AssessmentResults(BaseModel):
    """Everything an assessment measured, in the form reports are rendered from (versioned JSON)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: str = RESULTS_SCHEMA_VERSION
    kind: Literal["amulet.assessment-results"] = "amulet.assessment-results"
    name: str
    description: str = ""
    created: str
    amulet_version: str
    spec: dict[str, Any]
    spec_sha256: str
    data_sha256: str | None = None
    seeds: list[int]
    rows: list[RowInfo]
    columns: list[ColumnInfo]
    cells: list[CellResult]
    metrics: list[MetricSummary]
    accuracy: list[AccuracySummary]
    matrix: list[MatrixCell]
    checks: list[CheckResult]
    status: Literal["complete", "partial", "failed"] = Field(
        default="complete",
        description="failed: the baseline could not be measured for any seed, or no cell is ok; partial: a "
        "training or a cell errored; complete otherwise",
    )
    warnings: list[ResultWarning] = Field(default_factory=list)
    findings: list[MatrixCell] = Field(
        default_factory=list,
        description="The significant, non-degenerate, ok matrix cells, largest |susceptibility change| first",
    )
    threat_model: dict[str, str] = Field(default_factory=dict)
    reproducibility: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # results.json carries "$schema" and the computed "exit_code"/"counts"; reading it back ignores them.
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in ("$schema", "exit_code", "counts")}
            version = str(data.get("schema_version", RESULTS_SCHEMA_VERSION))
            if version not in READABLE_SCHEMA_VERSIONS:
                raise ValueError(
                    f"schema_version {version!r} is not readable by this Amulet (it reads "
                    f"{', '.join(READABLE_SCHEMA_VERSIONS)}); upgrade Amulet to read this file."
                )
            if version == "1.0":
                data = _upgrade_1_0(data)
        return data

    @model_validator(mode="after")
    def _derive_strength(self) -> AssessmentResults:
        # Files before 1.3 carry no attack strength: derive it from the columns' parameters and the cells'
        # counts, as aggregation does.
        if self.schema_version in ("1.0", "1.1", "1.2"):
            attach_strength(self)
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        """0 every check passed; 1 a check failed or was inconclusive; 2 an error (a cell or training errored,
        the assessment is partial or failed); 3 a check could not run."""
        statuses = {c.status for c in self.checks}
        if statuses & {"fail", "inconclusive"}:
            return 1
        if any(c.status == "error" for c in self.cells) or self.status != "complete":
            return 2
        if "not_run" in statuses:
            return 3
        return 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Numbers of cells by status and checks by verdict."""
        out: dict[str, int] = {"cells": len(self.cells)}
        for status in ("ok", "not_run", "error"):
            out[f"cells_{status}"] = sum(c.status == status for c in self.cells)
        out["matrix_degenerate"] = sum(m.status == "degenerate" for m in self.matrix)
        out["rows_degenerate"] = sum(a.status == "degenerate" for a in self.accuracy)
        out["rows_failed"] = sum(a.status == "failed" for a in self.accuracy)
        out["findings"] = len(self.findings)
        for status in ("pass", "fail", "inconclusive", "not_run"):
            out[f"checks_{status}"] = sum(c.status == status for c in self.checks)
        return out

    def metric(self, row: str, risk: str, metric: str, attack: str | None = None) -> MetricSummary:
        """The summary of ``risk.metric`` for ``row`` (KeyError when absent)."""
        for m in self.metrics:
            if m.row == row and m.risk == risk and m.metric == metric and (attack is None or m.attack == attack):
                return m
        raise KeyError(f"No metric {risk}.{metric} for row {row!r}.")


def _upgrade_1_0(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields schema 1.1 added from what a 1.0 file holds (units, status, a few-seeds warning)."""
    data = dict(data)
    units: dict[tuple[str, str, str], str] = {}
    for col in data.get("columns") or []:
        for m in col.get("headline_metrics") or []:
            units[(col.get("risk", ""), col.get("attack", ""), m.get("key", ""))] = str(m.get("unit", ""))
    data["matrix"] = [
        {
            **cell,
            "unit": cell.get("unit")
            or units.get((str(cell.get("risk")), str(cell.get("attack")), str(cell.get("metric"))), ""),
        }
        if isinstance(cell, dict)
        else cell
        for cell in data.get("matrix") or []
    ]
    cells = [c for c in data.get("cells") or [] if isinstance(c, dict)]
    if "status" not in data:
        if cells and not any(c.get("status") == "ok" for c in cells):
            data["status"] = "failed"
        elif any(c.get("status") == "error" for c in cells):
            data["status"] = "partial"
    if "warnings" not in data:
        warnings = []
        if len(data.get("seeds") or []) < MIN_SEEDS:
            warnings.append(few_seeds_warning(len(data.get("seeds") or [])).model_dump())
        data["warnings"] = warnings
    return data


#: Fewer seeds than this gives the "few_seeds" warning.
MIN_SEEDS = 3


def few_seeds_warning(n: int) -> ResultWarning:
    return ResultWarning(
        code="few_seeds",
        message=f"Only {n} seed{'s' if n != 1 else ''}: with fewer than {MIN_SEEDS} seeds the 95% intervals are very "
        "wide (or absent) and few changes can be significant; use at least 3 seeds (5 for decisions).",
    )


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of the results file (``schema_version`` :data:`RESULTS_SCHEMA_VERSION`)."""
    schema = AssessmentResults.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://amulet.dev/schemas/assessment-results-v{RESULTS_SCHEMA_VERSION}.json"
    schema["title"] = "Amulet assessment results"
    schema["properties"]["$schema"] = {"type": "string", "description": "URI of this schema."}
    # NaN ("not measured") is written as null.
    schema["$defs"]["CellResult"]["properties"]["metrics"]["additionalProperties"] = {
        "anyOf": [{"type": "number"}, {"type": "null"}]
    }
    return schema


def _column_strength(column: ColumnInfo, cells: list[CellResult]) -> AttackStrength | None:
    """The budget of a column: its ok cells' when they agree, else the first one's marked as varying."""
    measured = [c.strength for c in cells if c.status == "ok" and c.strength is not None]
    if not measured:
        return attack_strength(column.attack, column.params, {})
    first = measured[0]
    if all(m.summary == first.summary for m in measured):
        return first
    return first.model_copy(
        update={
            "summary": f"varies by cell, e.g. {first.summary}",
            "weak": any(m.weak for m in measured),
            "note": next((m.note for m in measured if m.weak), ""),
        }
    )


def attach_strength(results: AssessmentResults) -> AssessmentResults:
    """Derive each cell's and column's attack strength and apply the weak-budget rule, in place.

    A cell without a ``strength`` gets it from its column's parameters (as run) and its own counts. A column
    whose attack ran with a weak budget marks its matrix cells ``weak_budget``, drops them from ``findings``
    (their significance is kept, and shown) and gets a ``weak_budget`` warning.

    Args:
        results: Results to complete (aggregated now, or read from a file older than schema 1.3).

    Returns:
        ``results`` itself.
    """
    params = {(c.risk, c.attack): c.params for c in results.columns}
    for cell in results.cells:
        if cell.strength is None and cell.status == "ok" and (cell.risk, cell.attack) in params:
            cell.strength = attack_strength(cell.attack, params[(cell.risk, cell.attack)], cell.metrics)
    weak: dict[str, ColumnInfo] = {}
    for column in results.columns:
        own = [c for c in results.cells if (c.risk, c.attack) == (column.risk, column.attack)]
        column.strength = _column_strength(column, own)
        if column.strength is not None and column.strength.weak:
            weak[column.label] = column
    for matrix_cell in results.matrix:
        matrix_cell.weak_budget = matrix_cell.column in weak
    left_out = {label: sum(f.column == label for f in results.findings) for label in weak}
    results.findings = [f for f in results.findings if f.column not in weak]
    known = {w.message for w in results.warnings if w.code == "weak_budget"}
    for label, column in weak.items():
        n = left_out[label]
        assert column.strength is not None
        message = (
            f"{label}: {column.strength.note}; it ran with {column.strength.summary}. Its cells are shown with "
            "this note and are not findings"
            + (f" ({n} significant change{'s' if n != 1 else ''} left out of the findings)" if n else "")
            + "; raise the budget to measure this risk."
        )
        if message not in known:
            results.warnings.append(ResultWarning(code="weak_budget", message=message))
    return results
