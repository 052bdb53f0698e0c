"""Results of an assessment: per-seed values, summaries, deltas vs baseline, directions and policy verdicts.

:func:`aggregate_results` turns a plan and its :class:`CellResult` objects (from any process, in any order)
into one :class:`AssessmentResults`, the object every report is rendered from. Its JSON form is versioned
(:data:`RESULTS_SCHEMA_VERSION`; :func:`results_json_schema`).

Conventions:
  * A metric value of NaN means "not measured" and is left out of every statistic.
  * Intervals are two-sided 95% t-intervals over seeds; deltas are paired by seed. The interval of a
    bounded metric (``HeadlineMetric.value_range``: % metrics, AUCs, rates; clean accuracy) is intersected
    with its range, and the interval of its change with ``[-(high - low), high - low]``.
  * Utility first: each row's models are checked with :func:`amulet.utils.check_utility`'s rule; a row
    with a degenerate model (any seed) is ``degenerate``: its matrix cells are ``degenerate``, excluded
    from ``findings``, and every policy check on it is ``inconclusive``. A degenerate baseline makes every
    change against it (every matrix cell, every delta check) untrustworthy in the same way.
  * ``direction`` comes from a two-sided paired t-test at the 5% level: ``more_susceptible`` /
    ``less_susceptible`` (using the metric's ``higher_is_riskier``), ``no_significant_change``,
    ``insufficient_data`` (fewer than two paired seeds) or ``not_measured``.
  * Policy verdicts use the interval: ``pass`` if it lies entirely on the allowed side, ``fail`` if
    entirely on the other, ``inconclusive`` if it straddles the threshold, ``not_run`` if nothing was
    measured. ``<=``/``>=`` include the threshold, ``<``/``>`` exclude it. With one seed the interval is
    the value itself.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import platform
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from amulet.assess._compliance import clauses_for
from amulet.assess._plan import AssessmentPlan
from amulet.assess._spec import BASELINE
from amulet.assess._stats import ALPHA, Summary, clip_interval, paired_difference, summarize
from amulet.registry import RocCurve, VulnerableRecord
from amulet.utils._utility import degenerate_reason

__all__ = [
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

RESULTS_SCHEMA_VERSION = "1.2"
#: Every schema version this module reads (older files get the newer fields derived or defaulted; 1.2 added
#: each cell's ``roc`` and ``vulnerable_records``).
READABLE_SCHEMA_VERSIONS = ("1.0", "1.1", "1.2")

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
    ``"cell_errors"`` or ``"budget_exceeded"``; ``row``: the row it concerns (``None``: the assessment).
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
            warnings.append(_few_seeds_warning(len(data.get("seeds") or [])).model_dump())
        data["warnings"] = warnings
    return data


#: Fewer seeds than this gives the "few_seeds" warning.
MIN_SEEDS = 3


def _few_seeds_warning(n: int) -> ResultWarning:
    return ResultWarning(
        code="few_seeds",
        message=f"Only {n} seed{'s' if n != 1 else ''}: with fewer than {MIN_SEEDS} seeds the 95% intervals are very "
        "wide (or absent) and few changes can be significant; use at least 3 seeds (5 for decisions).",
    )


def _stat_fields(values: dict[int, float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    s = summarize(list(values.values()))
    low, high = clip_interval(s.ci_low, s.ci_high, bounds)
    return {"values": values, "n": s.n, "mean": s.mean, "se": s.se, "ci_low": low, "ci_high": high}


def _delta(
    values: dict[int, float], baseline: dict[int, float], bounds: tuple[float, float] | None = None
) -> DeltaSummary:
    seeds = sorted(set(values) & set(baseline))
    d: Summary = paired_difference([values[s] for s in seeds], [baseline[s] for s in seeds])
    # A change of a metric in [low, high] lies in [-(high - low), high - low].
    span = None if bounds is None else (-(bounds[1] - bounds[0]), bounds[1] - bounds[0])
    low, high = clip_interval(d.ci_low, d.ci_high, span)
    return DeltaSummary(n=d.n, mean=d.mean, se=d.se, ci_low=low, ci_high=high, p_value=d.p_value)


def _direction(delta: DeltaSummary | None, higher_is_riskier: bool | None) -> Direction:
    if delta is None or delta.n == 0 or higher_is_riskier is None:
        return "not_measured"
    if delta.n < 2 or delta.p_value is None:
        return "insufficient_data"
    if delta.p_value >= ALPHA:
        return "no_significant_change"
    signed = (delta.mean or 0.0) * (1 if higher_is_riskier else -1)
    return "more_susceptible" if signed > 0 else "less_susceptible"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _verdict(op: str, threshold: float, low: float, high: float) -> Literal["pass", "fail", "inconclusive"]:
    """``pass`` when every value of [low, high] satisfies ``x op threshold``, ``fail`` when none does."""
    if op == "<=":
        ok_all, ok_none = high <= threshold, low > threshold
    elif op == "<":
        ok_all, ok_none = high < threshold, low >= threshold
    elif op == ">=":
        ok_all, ok_none = low >= threshold, high < threshold
    else:  # ">"
        ok_all, ok_none = low > threshold, high <= threshold
    return "pass" if ok_all else "fail" if ok_none else "inconclusive"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
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
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _hardware() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return info


def _data_split_text(plan: AssessmentPlan) -> str:
    ds = plan.spec.dataset
    member = ds.member_fraction
    return (
        f"Dataset {ds.source!r}: its train split"
        + (
            f" (subsampled to {ds.training_size:g}{' rows' if ds.training_size > 1 else ' of it'})"
            if ds.training_size
            else ""
        )
        + f" is divided per seed (seeded, disjoint) into the target's member rows ({member:.0%}, the only rows the "
        f"target and each defended model train on) and the adversary's rows ({1 - member:.0%}, owned by the attacker, "
        f"from the same distribution). The test split"
        + (f" (subsampled to {ds.test_size:g}{' rows' if ds.test_size > 1 else ' of it'})" if ds.test_size else "")
        + " is held out from both and used for evaluation."
    )


def aggregate_results(
    plan: AssessmentPlan,
    cell_results: Iterable[CellResult | dict[str, Any]],
    *,
    trainings: Sequence[dict[str, Any]] | None = None,
    created: str | None = None,
) -> AssessmentResults:
    """Combine cell results into the assessment's results (summaries, deltas, matrix, verdicts).

    Args:
        plan: The plan the cells came from.
        cell_results: One :class:`CellResult` (or its dict) per cell, any order; cells of the plan with
            no result count as errors ("no result").
        trainings: Optional records returned by :func:`~amulet.assess.run_training` (reproducibility section).
        created: ISO timestamp to record (default: now, UTC).

    Returns:
        The :class:`AssessmentResults`.
    """
    from amulet import __version__, registry

    spec = plan.spec
    by_key: dict[str, CellResult] = {}
    for item in cell_results:
        result = item if isinstance(item, CellResult) else CellResult.model_validate(item)
        by_key[result.key] = result
    cells: list[CellResult] = []
    for planned in plan.cells:
        found = by_key.get(planned.key)
        if found is not None:
            cells.append(found)
        else:
            cells.append(
                CellResult(
                    key=planned.key,
                    row=planned.row,
                    risk=planned.risk,
                    attack=planned.attack,
                    seed=planned.seed,
                    status="error",
                    reason="no result was recorded for this cell",
                )
            )

    columns: list[ColumnInfo] = []
    for col in plan.columns:
        risk = registry.get_risk(col.risk)
        attack = registry.get_attack(col.attack)
        try:
            params = attack.params(**col.params).model_dump(mode="json")
        except Exception:
            params = dict(col.params)
        columns.append(
            ColumnInfo(
                risk=col.risk,
                attack=col.attack,
                label=col.label,
                risk_name=risk.name,
                risk_code=risk.code,
                category=risk.category,
                risk_description=risk.description,
                attack_name=attack.name,
                attack_code=attack.code,
                attack_summary=attack.summary,
                attack_reference=attack.reference,
                params=params,
                threat_model={k: str(v) for k, v in vars(attack.threat_model).items()},
                headline_metrics=[
                    {
                        "key": m.key,
                        "name": m.name,
                        "higher_is_riskier": m.higher_is_riskier,
                        "unit": m.unit,
                        "description": m.description,
                    }
                    for m in risk.headline_metrics
                ],
                primary_metric=risk.headline_metrics[0].key,
            )
        )

    # Values per (row, risk, attack, metric) -> seed -> value.
    values: dict[tuple[str, str, str, str], dict[int, float]] = {}
    # Per row: utility key -> seed -> value. A model's figures are taken from any cell that recorded them
    # (an attack that errors or cannot apply still ran on a trained, measured model).
    utility: dict[str, dict[str, dict[int, float]]] = {r.name: {k: {} for k in UTILITY_KEYS} for r in plan.rows}
    properties: dict[str, dict[str, dict[int, float]]] = {r.name: {} for r in plan.rows}
    for c in cells:
        for key, value in c.metrics.items():
            if key in UTILITY_KEYS:
                if _finite(value):
                    utility[c.row][key].setdefault(c.seed, float(value))
                continue
            if c.status != "ok":
                continue
            if key.startswith(MODEL_PREFIX):
                if _finite(value):
                    properties[c.row].setdefault(key[len(MODEL_PREFIX) :], {})[c.seed] = float(value)
                continue
            entry = values.setdefault((c.row, c.risk, c.attack, key), {})
            if _finite(value):
                entry[c.seed] = float(value)
    accuracy = {name: figures[ACCURACY_KEY] for name, figures in utility.items()}

    metrics: list[MetricSummary] = []
    intended_of = {r.name: set(r.targets) for r in plan.rows}
    for row in plan.rows:
        for col in plan.columns:
            risk = registry.get_risk(col.risk)
            headline = {m.key: m for m in risk.headline_metrics}
            extra = sorted(k[3] for k in values if k[:3] == (row.name, col.risk, col.attack) and k[3] not in headline)
            for key in [*headline, *extra]:
                vals = values.get((row.name, col.risk, col.attack, key), {})
                hm = headline.get(key)
                bounds = hm.value_range if hm else None
                delta = None
                if row.name != BASELINE:
                    delta = _delta(vals, values.get((BASELINE, col.risk, col.attack, key), {}), bounds)
                direction = _direction(delta, hm.higher_is_riskier if hm else None)
                change = None
                if delta is not None and delta.mean is not None and hm is not None:
                    change = delta.mean * (1 if hm.higher_is_riskier else -1)
                metrics.append(
                    MetricSummary(
                        row=row.name,
                        risk=col.risk,
                        attack=col.attack,
                        metric=key,
                        name=hm.name if hm else key,
                        unit=hm.unit if hm else "",
                        headline=hm is not None,
                        higher_is_riskier=hm.higher_is_riskier if hm else None,
                        intended=col.risk in intended_of[row.name],
                        delta=delta,
                        direction=direction,
                        susceptibility_change=change,
                        **_stat_fields(vals, bounds),
                    )
                )

    accuracy_rows = []
    for row in plan.rows:
        delta = None if row.name == BASELINE else _delta(accuracy[row.name], accuracy[BASELINE], ACCURACY_RANGE)
        props = {k: math.fsum(v.values()) / len(v) for k, v in sorted(properties[row.name].items()) if v}
        accuracy_rows.append(
            AccuracySummary(
                row=row.name,
                delta=delta,
                properties=props,
                **_utility_fields(row.name, utility[row.name], cells),
                **_stat_fields(accuracy[row.name], ACCURACY_RANGE),
            )
        )
    row_state = {a.row: a for a in accuracy_rows}
    base_state = row_state[BASELINE]

    lookup = {(m.row, m.risk, m.attack, m.metric): m for m in metrics}
    matrix: list[MatrixCell] = []
    for row in plan.rows:
        if row.name == BASELINE:
            continue
        for col, info in zip(plan.columns, columns):
            m = lookup[(row.name, col.risk, col.attack, info.primary_metric)]
            base = lookup[(BASELINE, col.risk, col.attack, info.primary_metric)]
            own = [c for c in cells if (c.row, c.risk, c.attack) == (row.name, col.risk, col.attack)]
            status, reason = _cell_status(own, row_state[row.name], base_state)
            scale = 100.0 if m.unit == "%" else 1.0
            matrix.append(
                MatrixCell(
                    row=row.name,
                    column=col.label,
                    risk=col.risk,
                    attack=col.attack,
                    metric=info.primary_metric,
                    intended=m.intended,
                    value=m.mean,
                    ci_low=m.ci_low,
                    ci_high=m.ci_high,
                    baseline=base.mean,
                    delta=m.delta.mean if m.delta else None,
                    delta_ci_low=m.delta.ci_low if m.delta else None,
                    delta_ci_high=m.delta.ci_high if m.delta else None,
                    susceptibility_change=None if m.susceptibility_change is None else m.susceptibility_change / scale,
                    direction=m.direction,
                    status=status,
                    reason=reason,
                    significant=status == "ok" and m.direction in SIGNIFICANT_DIRECTIONS,
                    unit=m.unit,
                )
            )
    findings = sorted((c for c in matrix if c.significant), key=lambda c: -abs(c.susceptibility_change or 0.0))

    checks = _evaluate_policy(plan, lookup, cells, columns)
    checks = [_distrust(check, row_state[check.row], base_state) for check in checks]
    warnings = _warnings(plan, cells, accuracy_rows)
    assessment_status = _assessment_status(cells, base_state, accuracy_rows)

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
    spec_json = spec.canonical_json()
    reproducibility: dict[str, Any] = {
        "seeds": list(spec.seeds),
        "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
        "data_sha256": data_sha,
        "model_sha256": dict(sorted(model_hashes.items())),
        "libraries": _versions(),
        "hardware": _hardware(),
        "cell_seconds": round(sum(c.seconds for c in cells), 3),
    }
    if trainings:
        kinds = [t.get("status") for t in trainings]
        reproducibility["trainings"] = {s: kinds.count(s) for s in ("trained", "reused", "imported")}
        reproducibility["devices"] = sorted({str(t.get("device")) for t in trainings if t.get("device")})
    return AssessmentResults(
        name=spec.name,
        description=spec.description,
        created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        amulet_version=__version__,
        spec=spec.model_dump(mode="json"),
        spec_sha256=reproducibility["spec_sha256"],
        data_sha256=data_sha,
        seeds=list(spec.seeds),
        rows=[RowInfo(name=r.name, stack=r.stack, targets=r.targets) for r in plan.rows],
        columns=columns,
        cells=cells,
        metrics=metrics,
        accuracy=accuracy_rows,
        matrix=matrix,
        checks=checks,
        status=assessment_status,
        warnings=warnings,
        findings=findings,
        threat_model={"data_split": _data_split_text(plan), "model": _model_text(plan)},
        reproducibility=reproducibility,
    )


def _distinct_reasons(cells: Iterable[CellResult], status: str, limit: int = 3) -> str:
    reasons = sorted({c.reason for c in cells if c.status == status and c.reason})
    text = "; ".join(reasons[:limit])
    return text + (f"; and {len(reasons) - limit} more" if len(reasons) > limit else "")


def _utility_fields(row: str, figures: dict[str, dict[int, float]], cells: list[CellResult]) -> dict[str, Any]:
    """Majority rate, worst top-class share and p-value, and the row's status under the degenerate rule."""
    accuracy, majority = figures[ACCURACY_KEY], figures[MAJORITY_KEY]
    top, p_value = figures[TOP_CLASS_KEY], figures[P_VALUE_KEY]
    seeds = sorted(set(accuracy) | set(top) | set(p_value))
    per_seed = {
        seed: degenerate_reason(accuracy.get(seed), majority.get(seed), top.get(seed), p_value.get(seed))
        for seed in seeds
    }
    bad = [seed for seed in seeds if per_seed[seed]]
    out: dict[str, Any] = {
        "majority_rate": math.fsum(majority.values()) / len(majority) if majority else None,
        "top_class_share": max(top.values()) if top else None,
        "accuracy_p_value": max(p_value.values()) if p_value else None,
        "degenerate_seeds": bad,
        "status": "ok",
        "reason": "",
    }
    own = [c for c in cells if c.row == row]
    if bad:
        # Seeds with the same reason are named together (a constant model says so once, not once per seed).
        grouped: dict[str, list[int]] = {}
        for seed in bad:
            grouped.setdefault(per_seed[seed], []).append(seed)
        out["status"] = "degenerate"
        out["reason"] = (
            "degenerate model ("
            + "; ".join(
                f"seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}: {why}" for why, s in grouped.items()
            )
            + ")"
        )
    elif not seeds and any(c.status == "error" for c in own):
        out["status"] = "failed"
        out["reason"] = "no model of this row could be measured: " + _distinct_reasons(own, "error")
    elif any(c.status == "error" for c in own) and not any(c.status == "ok" for c in own):
        # The model was measured but every attack on it errored: report the row, but say so.
        out["reason"] = "every cell of this row errored: " + _distinct_reasons(own, "error")
    return out


CellStatus = Literal["ok", "degenerate", "error", "not_run"]


def _cell_status(own: list[CellResult], row: AccuracySummary, baseline: AccuracySummary) -> tuple[CellStatus, str]:
    """(status, reason) of a matrix cell from its cells, its row's utility and the baseline's."""
    if not any(c.status == "ok" for c in own):
        status: CellStatus = "error" if any(c.status == "error" for c in own) else "not_run"
        return status, _distinct_reasons(own, status) or "no result was recorded"
    if row.status == "degenerate":
        return "degenerate", f"the model of row {row.row!r} is a {row.reason}"
    if baseline.status == "degenerate":
        return "degenerate", f"the baseline is a {baseline.reason}: a change against it means nothing"
    if baseline.status == "failed":
        return "error", f"the baseline could not be measured, so there is no change to report ({baseline.reason})"
    errors = [c for c in own if c.status == "error"]
    if errors:
        seeds = ", ".join(str(c.seed) for c in errors)
        return "ok", f"seed(s) {seeds} errored and are left out: {_distinct_reasons(own, 'error')}"
    return "ok", ""


def _distrust(check: CheckResult, row: AccuracySummary, baseline: AccuracySummary) -> CheckResult:
    """A check on a degenerate model (or a change against a degenerate baseline) is inconclusive, never pass."""
    if row.status == "degenerate":
        why = f"row {row.row!r} has a {row.reason}"
    elif check.on == "delta" and baseline.status == "degenerate":
        why = f"the baseline it is compared with has a {baseline.reason}"
    else:
        return check
    measured = check.message if check.status != "not_run" else ""
    return check.model_copy(
        update={
            "status": "inconclusive",
            "message": f"Inconclusive: {why}; a verdict on a degenerate model means nothing. "
            + (f"(As measured: {measured})" if measured else ""),
        }
    )


def _warnings(plan: AssessmentPlan, cells: list[CellResult], rows: list[AccuracySummary]) -> list[ResultWarning]:
    out: list[ResultWarning] = []
    base = next(a for a in rows if a.row == BASELINE)
    if base.status == "failed":
        out.append(
            ResultWarning(
                code="baseline_failed",
                row=BASELINE,
                message=f"The baseline failed: {base.reason}. No change against it can be measured; the matrix is "
                "empty and the assessment has failed.",
            )
        )
    elif base.status == "degenerate":
        out.append(
            ResultWarning(
                code="baseline_degenerate",
                row=BASELINE,
                message=f"The baseline is a {base.reason}. Every change against it (every matrix cell, every delta "
                "check) is untrustworthy and flagged degenerate; fix the baseline's training before reading them.",
            )
        )
    for a in rows:
        if a.row != BASELINE and a.status == "degenerate":
            out.append(
                ResultWarning(
                    code="row_degenerate",
                    row=a.row,
                    message=f"Row {a.row!r} is a {a.reason}. Its cells are greyed out, excluded from the findings, "
                    "and every check on it is inconclusive.",
                )
            )
    if len(plan.spec.seeds) < MIN_SEEDS:
        out.append(_few_seeds_warning(len(plan.spec.seeds)))
    for row in plan.rows:
        errors = [c for c in cells if c.row == row.name and c.status == "error"]
        if errors:
            out.append(
                ResultWarning(
                    code="cell_errors",
                    row=row.name,
                    message=f"{len(errors)} of {sum(c.row == row.name for c in cells)} cells of row {row.name!r} "
                    f"errored: {_distinct_reasons(errors, 'error')}",
                )
            )
    over = [c for c in cells if c.status == "error" and "AttackBudgetError" in c.reason]
    if over:
        out.append(
            ResultWarning(
                code="budget_exceeded",
                message=f"{len(over)} cell(s) produced examples outside the attack's stated budget and report no "
                f"numbers: {_distinct_reasons(over, 'error', 2)}",
            )
        )
    return out


def _assessment_status(
    cells: list[CellResult], baseline: AccuracySummary, rows: list[AccuracySummary]
) -> Literal["complete", "partial", "failed"]:
    if baseline.status == "failed" or (cells and not any(c.status == "ok" for c in cells)):
        return "failed"
    if any(c.status == "error" for c in cells) or any(a.status == "failed" for a in rows):
        return "partial"
    return "complete"


def _model_text(plan: AssessmentPlan) -> str:
    m = plan.spec.model
    if m.file:
        from pathlib import Path

        t = plan.spec.training
        config = f"{t.epochs} epochs, batch size {t.batch_size}, {t.optimizer} with learning rate {t.lr:g}" + (
            f", weight decay {t.weight_decay:g}" if t.weight_decay else ""
        )
        retrained = [r.name for r in plan.rows if r.name != "baseline"]
        return (
            f"Uploaded model {Path(m.file).name!r} (an exported graph of any architecture). Uploaded weights: the "
            "'baseline' row is the uploaded model as deployed, assumed to be trained on the member rows. "
            + (
                f"Retrained: the rows {', '.join(repr(n) for n in retrained)} train the same graph from a fresh "
                f"initialisation (each layer initialised as PyTorch initialises its type, seeded) with {config}. "
                if retrained
                else ""
            )
            + "Shadow and population models of the attacks are retrained the same way."
        )
    text = f"Architecture {m.architecture!r} (capacity {m.capacity}{', config ' + str(m.config) if m.config else ''})"
    if m.weights:
        return text + (
            f"; the baseline is the supplied trained model ({m.weights}), assumed to be trained on the member rows; "
            "each defended model is retrained from the architecture with the training config."
        )
    return text + "; the baseline and every defended model are trained with the spec's training config and seed."


def _fmt(value: float | None, unit: str, change: bool = False) -> str:
    from amulet.assess._display import format_change, format_value

    return format_change(value, unit) if change else format_value(value, unit)


def _evaluate_policy(
    plan: AssessmentPlan,
    lookup: dict[tuple[str, str, str, str], MetricSummary],
    cells: list[CellResult],
    columns: list[ColumnInfo],
) -> list[CheckResult]:
    row_names = [r.name for r in plan.rows]
    category = {c.risk: c.category for c in columns}
    out: list[CheckResult] = []
    for index, check in enumerate(plan.spec.policy):
        risk, _, metric = check.metric.partition(".")
        rows = row_names if check.row == "*" else fnmatch.filter(row_names, check.row)
        if check.delta:
            rows = [r for r in rows if r != BASELINE]
        attacks = [
            c.attack for c in plan.columns if c.risk == risk and (check.attack is None or c.attack == check.attack)
        ]
        clause_ids = [c.id for c in clauses_for(risk, category.get(risk, ""))]
        base_id = check.id or f"policy[{index}]:{check.metric}{check.op}{check.threshold:g}" + (
            ":delta" if check.delta else ""
        )
        for row in rows:
            for attack in attacks:
                m = lookup[(row, risk, attack, metric)]
                stats = m.delta if check.delta else m
                n = stats.n if stats is not None else 0
                value = stats.mean if stats is not None else None
                low = stats.ci_low if stats is not None else None
                high = stats.ci_high if stats is not None else None
                check_id = f"{base_id}:{row}" + (f":{attack}" if len(attacks) > 1 else "")
                what = ("change vs baseline of " if check.delta else "") + check.metric
                common: dict[str, Any] = {
                    "id": check_id,
                    "metric": check.metric,
                    "risk": risk,
                    "attack": attack,
                    "row": row,
                    "op": check.op,
                    "threshold": check.threshold,
                    "on": "delta" if check.delta else "value",
                    "unit": m.unit,
                    "intended": m.intended,
                    "clauses": clause_ids,
                }
                if n == 0 or value is None:
                    reasons = sorted(
                        {
                            c.reason
                            for c in cells
                            if (c.row, c.risk, c.attack) == (row, risk, attack) and c.status != "ok" and c.reason
                        }
                    )
                    out.append(
                        CheckResult(
                            **common,
                            status="not_run",
                            n=0,
                            message=f"{what} was not measured for {row!r}"
                            + (": " + "; ".join(reasons) if reasons else " (no finite value from any seed)."),
                        )
                    )
                    continue
                if low is None or high is None:  # one seed: the interval is the value itself
                    low = high = value
                status = _verdict(check.op, check.threshold, low, high)
                d = bool(check.delta)
                interval = f"[{_fmt(low, m.unit, d)}, {_fmt(high, m.unit, d)}]"
                threshold = f"{check.op} {_fmt(check.threshold, m.unit, d)}"
                if status == "inconclusive":
                    message = (
                        f"{what} = {_fmt(value, m.unit, d)}, 95% CI {interval} straddles the threshold "
                        f"{threshold} over {n} seeds; add seeds to decide."
                    )
                else:
                    word = "satisfies" if status == "pass" else "violates"
                    message = (
                        f"{what} = {_fmt(value, m.unit, d)}, 95% CI {interval} over {n} seed{'s' if n > 1 else ''} "
                        f"{word} {threshold}."
                    )
                out.append(
                    CheckResult(**common, status=status, value=value, ci_low=low, ci_high=high, n=n, message=message)
                )
    return out


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
