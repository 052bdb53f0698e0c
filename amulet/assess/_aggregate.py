"""Aggregation: cell results in, per-seed values, summaries, deltas vs baseline, directions and verdicts out.

:func:`aggregate_results` turns a plan and its :class:`CellResult` objects (from any process, in any order)
into one :class:`~amulet.assess.AssessmentResults` (its schema: :mod:`amulet.assess._schema`), the object every
report is rendered from. Policy verdicts come from :mod:`amulet.assess._policy`, provenance from
:mod:`amulet.assess._provenance`.

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
  * Policy verdicts use the interval (:mod:`amulet.assess._policy`).

The file is longer than most (about 500 lines) because :func:`aggregate_results` is one pass over the plan
whose steps (summaries, deltas, statuses, warnings, checks) share the same per-row and per-column indexes;
its helpers sit next to it so that every rule a reported number follows is in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from amulet import __version__, registry
from amulet.assess._plan import AssessmentPlan
from amulet.assess._policy import distrust_degenerate, evaluate_policy
from amulet.assess._provenance import reproducibility_record
from amulet.assess._schema import (
    ACCURACY_KEY,
    ACCURACY_RANGE,
    MAJORITY_KEY,
    MIN_SEEDS,
    MODEL_PREFIX,
    ONE_SIDED_KEY,
    P_VALUE_KEY,
    SIGNIFICANT_DIRECTIONS,
    TOP_CLASS_KEY,
    UTILITY_KEYS,
    AccuracySummary,
    AssessmentResults,
    CellResult,
    ColumnInfo,
    DeltaSummary,
    Direction,
    MatrixCell,
    MetricSummary,
    ResultWarning,
    RowInfo,
    attach_strength,
    few_seeds_warning,
)
from amulet.assess._spec import BASELINE
from amulet.assess._stats import ALPHA, Summary, clip_interval, paired_difference, summarize
from amulet.utils import degenerate_reason

__all__ = ["aggregate_results"]


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

    checks = evaluate_policy(plan, lookup, cells, columns)
    checks = [distrust_degenerate(check, row_state[check.row], base_state) for check in checks]
    warnings = _warnings(plan, cells, accuracy_rows)
    assessment_status = _assessment_status(cells, base_state, accuracy_rows)
    reproducibility = reproducibility_record(plan, cells, trainings)
    results = AssessmentResults(
        name=spec.name,
        description=spec.description,
        created=created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        amulet_version=__version__,
        spec=spec.model_dump(mode="json"),
        spec_sha256=reproducibility["spec_sha256"],
        data_sha256=reproducibility["data_sha256"],
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
    return attach_strength(results)


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
        out.append(few_seeds_warning(len(plan.spec.seeds)))
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
    one_sided = [c for c in cells if c.status == "ok" and c.metrics.get(ONE_SIDED_KEY) == 1.0]
    if one_sided:
        places = sorted({f"{c.row} x {c.risk} ({c.attack}), seed {c.seed}" for c in one_sided})
        out.append(
            ResultWarning(
                code="one_sided_decisions",
                message=f"{len(one_sided)} cell(s) decided every target model the same way ({'; '.join(places)}): "
                "their accuracy is then the share of one population whatever the scores, not a measure of the "
                "attack; read their AUC.",
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
