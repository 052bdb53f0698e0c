"""The executive summary of a report: the verdict in words, ranked findings with mitigations, utility cost."""

from __future__ import annotations

from typing import Any

from amulet import registry
from amulet.assess._display import format_change, format_interval, format_value
from amulet.assess._humanize import human_value, metric_label, plain_number
from amulet.assess._schema import AssessmentResults
from amulet.assess._spec import BASELINE

__all__ = ["SEVERITY_ORDER", "executive_summary", "metric_names"]

#: How sure a severity ranking is, in the order the executive summary lists them.
SEVERITY_ORDER = ("high", "medium", "low", "improvement")


def metric_names(results: AssessmentResults) -> dict[tuple[str, str], tuple[str, str]]:
    names: dict[tuple[str, str], tuple[str, str]] = {}
    for col in results.columns:
        for h in col.headline_metrics:
            names.setdefault((col.risk, str(h.get("key"))), (str(h.get("name", h.get("key"))), str(h.get("unit", ""))))
    for m in results.metrics:
        names.setdefault((m.risk, m.metric), (m.name, m.unit))
    return names


def _risk_names(results: AssessmentResults) -> dict[str, str]:
    return {c.risk: c.risk_name for c in results.columns}


def _catalogue_defenses(risk: str, exclude: set[str]) -> list[str]:
    """Registered defenses (key and name) whose intended targets include ``risk``, other than ``exclude``."""
    try:
        registry.load_builtins()
        found = [d for d in registry.defenses() if risk in d.targets and d.key not in exclude]
    except Exception:  # a broken plugin must not stop a report from rendering
        return []
    return [f"{d.name} ({d.key})" for d in found]


def _lower_first(name: str) -> str:
    """``Robust accuracy`` -> ``robust accuracy``; acronyms (``AUC``, ``TPR at 1% FPR``) keep their case."""
    return name[0].lower() + name[1:] if len(name) > 1 and name[1].islower() else name


def _severity(change: float | None) -> str:
    magnitude = abs(change or 0.0)
    if magnitude >= 0.10:
        return "high"
    if magnitude >= 0.03:
        return "medium"
    return "low"


def executive_summary(results: AssessmentResults) -> dict[str, Any]:
    """The executive summary: the verdict in words, the ranked findings with their mitigations, the utility cost.

    Findings are the significant matrix cells (more susceptible first, by the size of the change in
    susceptibility: ``high`` >= 0.10, i.e. 10 pts of a % metric or 0.10 of a rate, ``medium`` >= 0.03),
    failed and inconclusive policy checks, degenerate rows and attacks run with a weak budget (whose cells are
    never findings); improvements (less susceptible) come last.
    """
    names = metric_names(results)
    risk_names = _risk_names(results)
    metric_of = {(m.row, m.risk, m.attack, m.metric): m for m in results.metrics}
    stacks = {r.name: {str(e.get("defense")) for e in r.stack} for r in results.rows}
    n_seeds = len(results.seeds)
    items: list[dict[str, Any]] = []

    for f in results.findings:
        name, unit = names.get((f.risk, f.metric), (f.metric, f.unit))
        summary = metric_of.get((f.row, f.risk, f.attack, f.metric))
        p = summary.delta.p_value if summary is not None and summary.delta is not None else None
        n = summary.delta.n if summary is not None and summary.delta is not None else n_seeds
        worse = f.direction == "more_susceptible"
        risk_name = risk_names.get(f.risk, f.risk).lower()
        certainty = (
            f"95% CI of the change {format_interval(f.delta_ci_low, f.delta_ci_high, f.unit, change=True)}, "
            f"paired t-test p = {plain_number(p, '', 2)}, {n} seed{'s' if n != 1 else ''}"
        )
        if n < 5:
            certainty += " (few seeds: the interval is wide and the estimate may move with more)"
        if worse:
            meaning = (
                f"Adding {f.row} makes the model more susceptible to {risk_name}"
                f"{' although it is meant to protect against it' if f.intended else ' (an unintended side effect)'}: "
                f"{_lower_first(name)} moves from {format_value(f.baseline, f.unit)} to "
                f"{format_value(f.value, f.unit)}."
            )
            others = _catalogue_defenses(f.risk, stacks.get(f.row, set()))
            mitigation = (
                f"Add or compare a defense that targets {risk_name}: {', '.join(others[:3])}; "
                f"or change the parameters of {f.row} and measure again."
                if others
                else f"No other registered defense targets {risk_name}: change the parameters of {f.row}, "
                "or weigh this cost against what the defense protects."
            )
            severity = _severity(f.susceptibility_change)
        else:
            meaning = (
                f"{f.row} lowers the susceptibility to {risk_name}"
                f"{' as intended' if f.intended else ' (an unintended benefit)'}: {_lower_first(name)} moves from "
                f"{format_value(f.baseline, f.unit)} to {format_value(f.value, f.unit)}."
            )
            mitigation = "None needed; keep the check in the policy so that a regression is caught."
            severity = "improvement"
        items.append(
            {
                "severity": severity,
                "title": f"{f.row}: {name} under {f.attack} {format_change(f.delta, f.unit)}",
                "measured": f"{metric_label(name, unit)} of {risk_names.get(f.risk, f.risk)} ({f.attack}), "
                f"defended {format_value(f.value, f.unit)} vs baseline {format_value(f.baseline, f.unit)}, "
                f"change {format_change(f.delta, f.unit)}",
                "certainty": certainty,
                "meaning": meaning,
                "mitigation": mitigation,
                "rank": -abs(f.susceptibility_change or 0.0),
            }
        )

    degenerate = {a.row for a in results.accuracy if a.status == "degenerate"}
    for a in results.accuracy:
        if a.status != "degenerate":
            continue
        items.append(
            {
                "severity": "high",
                "title": f"{a.row}: the model is degenerate",
                "measured": f"clean accuracy {format_value(a.mean, '%')} against a majority rate of "
                f"{format_value(a.majority_rate, '%')}; {format_value(a.top_class_share, '%')} of its "
                "predictions go to one class",
                "certainty": f"one-sided binomial p = {plain_number(a.accuracy_p_value, '', 2)} (worst seed); "
                f"degenerate on seed{'s' if len(a.degenerate_seeds) != 1 else ''} "
                f"{', '.join(map(str, a.degenerate_seeds))}",
                "meaning": "The defended model predicts (almost) one class: it is unusable, and its risk numbers "
                "describe a constant function, so none of them is a finding.",
                "mitigation": "Weaken the defense (e.g. a larger privacy budget or a smaller perturbation), train "
                "longer, or check its parameters; the row's checks stay inconclusive until then.",
                "rank": -1.0,
            }
        )

    for col in results.columns:
        if col.strength is None or not col.strength.weak:
            continue
        significant = sum(m.significant for m in results.matrix if m.column == col.label)
        raise_to = ", ".join(f"{name} to at least {floor}" for name, floor in col.strength.raise_to.items())
        plural = "s" if significant != 1 else ""
        left_out = f" ({significant} significant change{plural} left out)" if significant else ""
        items.append(
            {
                "severity": "medium",
                "title": f"{col.label}: weak attack budget",
                "measured": f"the attack ran with {col.strength.summary}",
                "certainty": col.strength.note,
                "meaning": f"A change in {risk_names.get(col.risk, col.risk).lower()} smaller than this attack "
                "resolves goes unseen, and a result near chance says little about the risk; its cells are shown "
                "in the matrix but are not findings" + left_out + ".",
                "mitigation": f"Raise {raise_to or 'the budget'} and measure again.",
                "rank": 0.5,
            }
        )

    for c in results.checks:
        if c.status not in ("fail", "inconclusive") or (c.status == "inconclusive" and c.row in degenerate):
            continue
        risk_key, _, metric_key = c.metric.partition(".")
        name, unit = names.get((risk_key, metric_key), (c.metric, c.unit))
        measured = format_change(c.value, c.unit) if c.on == "delta" else format_value(c.value, c.unit)
        shown_unit = ("pts" if c.on == "delta" and unit == "%" else unit) if unit else ""
        rule = f"{name}{' change' if c.on == 'delta' else ''} {c.op} {human_value(c.threshold)}"
        rule += f" {shown_unit}" if shown_unit else ""
        interval = format_interval(c.ci_low, c.ci_high, c.unit, change=(c.on == "delta"))
        if c.status == "fail":
            others = _catalogue_defenses(risk_key, stacks.get(c.row, set()))
            items.append(
                {
                    "severity": "high",
                    "title": f"policy check {c.id} fails",
                    "measured": f"{rule} on {c.row} ({c.attack}): measured {measured}",
                    "certainty": f"95% CI {interval} over {c.n} seed{'s' if c.n != 1 else ''}: "
                    "the whole interval violates the threshold",
                    "meaning": f"The model does not meet the organisation's requirement on "
                    f"{risk_names.get(risk_key, risk_key).lower()}.",
                    "mitigation": (
                        f"Add a defense that targets it: {', '.join(others[:3])}; or revisit the threshold."
                        if others
                        else "Change the model or its training, or revisit the threshold."
                    ),
                    "rank": -0.5,
                }
            )
        else:
            items.append(
                {
                    "severity": "medium",
                    "title": f"policy check {c.id} is inconclusive",
                    "measured": f"{rule} on {c.row} ({c.attack}): measured {measured}",
                    "certainty": f"95% CI {interval} over {c.n} seed{'s' if c.n != 1 else ''} straddles the threshold",
                    "meaning": "The data cannot tell whether the requirement is met.",
                    "mitigation": f"Run more seeds (now {c.n}): the interval narrows roughly with the square root "
                    "of their number.",
                    "rank": 0.0,
                }
            )

    items.sort(key=lambda it: (SEVERITY_ORDER.index(it["severity"]), it["rank"]))

    counts = results.counts
    n_worse = sum(1 for f in results.findings if f.direction == "more_susceptible")
    n_better = len(results.findings) - n_worse
    if results.status == "failed":
        verdict = "The assessment FAILED: the baseline could not be measured, so nothing below can be compared."
    else:
        n_checks = len(results.checks)
        if not n_checks:
            head, checks = "NO POLICY", "The spec declares no policy checks"
        else:
            checks = (
                f"Of {n_checks} policy check{'s' if n_checks != 1 else ''}, {counts['checks_pass']} passed, "
                f"{counts['checks_fail']} failed, {counts['checks_inconclusive']} inconclusive and "
                f"{counts['checks_not_run']} could not run"
            )
            if counts["checks_fail"]:
                head = "NOT ACCEPTABLE as specified"
            elif counts["checks_inconclusive"]:
                head = "UNDECIDED: more evidence needed"
            elif counts["checks_not_run"]:
                head = "INCOMPLETE: some requirements were not measured"
            else:
                head = "ACCEPTABLE as specified"
        degenerate_rows = counts["rows_degenerate"]
        verdict = (
            f"{head}. {checks}. {n_worse} defense-risk interaction{'s' if n_worse != 1 else ''} made the model "
            f"significantly more susceptible, {n_better} significantly less"
            + (
                f"; {degenerate_rows} defended model{' is' if degenerate_rows == 1 else 's are'} degenerate (unusable)"
                if degenerate_rows
                else ""
            )
            + "."
        )
        if results.status == "partial":
            verdict += " The assessment is PARTIAL: some cells raised errors and are left out."

    baseline_acc = next((a for a in results.accuracy if a.row == BASELINE), None)
    utility: list[str] = []
    for a in results.accuracy:
        if a.row == BASELINE:
            continue
        if a.status == "degenerate":
            utility.append(f"{a.row}: unusable, the model is degenerate: {a.reason or 'it predicts one class'}.")
            continue
        if a.status == "failed" or a.delta is None or a.delta.mean is None:
            utility.append(f"{a.row}: its accuracy could not be measured.")
            continue
        low, high = a.delta.ci_low, a.delta.ci_high
        significant = low is not None and high is not None and (low > 0 or high < 0)
        base = f"{format_value(a.mean, '%')} vs {format_value(baseline_acc.mean if baseline_acc else None, '%')}"
        ci = format_interval(low, high, "%", change=True)
        if not significant:
            words = f"no significant accuracy change ({base}, change {format_change(a.delta.mean, '%')}, 95% CI {ci})."
        elif a.delta.mean < 0:
            words = f"costs {format_change(-a.delta.mean, '%').lstrip('+')} of accuracy ({base}, 95% CI {ci})."
        else:
            words = f"gains {format_change(a.delta.mean, '%').lstrip('+')} of accuracy ({base}, 95% CI {ci})."
        if "privacy_epsilon" in a.properties:
            words += f" Privacy budget: epsilon = {plain_number(a.properties['privacy_epsilon'], '', 3)}."
        utility.append(f"{a.row}: {words}")
    return {"verdict": verdict, "ranked": items, "utility": utility}
