"""Reports from one :class:`AssessmentResults`: HTML, PDF, JSON, JUnit XML, and the signed manifest.

* ``report.html``: self-contained (plotly.js and the figure inline, no network), interactive heatmap.
* ``report.pdf``: the same content through WeasyPrint, with the heatmap as an SVG drawn here.
* ``results.json``: the results object (``schema_version``; JSON Schema from :func:`results_json_schema`).
* ``junit.xml``: one ``<testcase>`` per policy verdict (fail/inconclusive -> ``<failure>``, not run -> ``<skipped>``).
* ``manifest.json`` + ``manifest.json.sig``: SHA-256 of every file, signed with Ed25519.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from amulet.assess._compliance import CLAUSES, DISCLAIMER
from amulet.assess._display import (
    SATURATION,
    cell_colour,
    cell_label,
    format_change,
    format_interval,
    format_value,
    text_colour,
)
from amulet.assess._exposure import RECORDS_PER_ROW, exposed_records, roc_svgs
from amulet.assess._heatmap import heatmap_rows, heatmap_svg, plotly_heatmap_html, tradeoff_svgs
from amulet.assess._schema import AssessmentResults, results_json_schema
from amulet.assess._signing import sign_report
from amulet.assess._spec import BASELINE
from amulet.assess._strength import strength_text

__all__ = ["FORMATS", "REPORT_FILES", "render_reports"]

FORMATS = ("html", "pdf", "json", "junit")
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf", "json": "results.json", "junit": "junit.xml"}

EXIT_MEANING = {
    0: "every policy check passed",
    1: "a policy check failed or was inconclusive",
    2: "an error: a training or a cell raised one (the assessment is partial or failed)",
    3: "a policy check could not run",
}

#: The model card's fields (``model_card`` of the spec), in the order the report shows them.
MODEL_CARD_FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "model"),
    ("version", "version"),
    ("owner", "owner"),
    ("intended_use", "intended use"),
    ("training_data", "training data"),
    ("assessor", "assessor"),
    ("sign_off", "sign-off"),
)

STATUS_MEANING = {
    "complete": "every training and every cell ran (cells that cannot apply are listed as not run).",
    "partial": "some trainings or cells raised errors; the numbers below leave them out.",
    "failed": "the baseline could not be measured (or no cell produced a value): there is nothing to compare.",
}


def _num(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}{unit}"


def _signed(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.{digits}g}{unit}"


def _interval(low: float | None, high: float | None, unit: str = "", signed: bool = False) -> str:
    if low is None or high is None:
        return ""
    f = _signed if signed else _num
    return f"[{f(low, unit)}, {f(high, unit)}]"


# --- Human formatting: no Python reprs in a report, and words that break only where a reader expects it. ---

_LITERAL = re.compile(r"[{\[]")


def human_value(value: Any) -> str:
    """A parameter value as a reader writes it: ``None`` -> ``none``, ``True`` -> ``yes``, lists comma-joined.

    Example:
        >>> human_value(None), human_value(True), human_value(0.010), human_value([32, 16])
        ('none', 'yes', '0.01', '[32, 16]')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "(" + human_params(value) + ")" if value else "(none)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(human_value(v) for v in value) + "]"
    return str(value)


def human_params(params: dict[str, Any] | None, *, empty: str = "defaults") -> str:
    """``{'clip_max': None, 'epsilon': 0.01}`` -> ``clip_max: none, epsilon: 0.01`` (``empty`` when none).

    Example:
        >>> human_params({"clip_max": None, "epsilon": 0.01}), human_params({})
        ('clip_max: none, epsilon: 0.01', 'defaults')
    """
    if not params:
        return empty
    return ", ".join(f"{k}: {human_value(v)}" for k, v in params.items())


def humanize_text(text: str) -> str:
    """Rewrite the Python dict/list literals inside free text (e.g. a threat-model sentence) as :func:`human_value`."""
    out: list[str] = []
    i = 0
    while True:
        match = _LITERAL.search(text, i)
        if match is None:
            out.append(text[i:])
            return "".join(out)
        start = match.start()
        depth, end = 0, -1
        for j in range(start, len(text)):
            if text[j] in "{[":
                depth += 1
            elif text[j] in "}]":
                depth -= 1
                if depth == 0:
                    end = j + 1
                    break
        literal: Any = None
        if end > 0:
            try:
                literal = ast.literal_eval(text[start:end])
            except (ValueError, SyntaxError):
                literal = None
        if isinstance(literal, (dict, list)):
            shown = human_params(literal, empty="none") if isinstance(literal, dict) else human_value(literal)
            out.append(text[i:start] + shown)
            i = end
        else:
            out.append(text[i : start + 1])
            i = start + 1


def breakable(text: Any) -> Markup:
    """Escaped text with a break opportunity (``<wbr>``) after each ``_``, and each ``.``/``/`` before a letter.

    Narrow table columns then wrap ``adversarial_training`` as ``adversarial_`` / ``training`` instead of
    breaking inside a word (the stylesheet forbids that: ``overflow-wrap: normal``, ``hyphens: manual``).
    """
    escaped = str(Markup.escape(str(text)))
    return Markup(re.sub(r"(_|[./](?=[A-Za-z]))", r"\1<wbr>", escaped))


def metric_label(name: str, unit: str) -> str:
    """A metric's human name with its unit: ``Robust accuracy (%)``; unitless metrics keep their name."""
    return f"{name} ({unit})" if unit else name


#: How sure a severity ranking is, in the order the executive summary lists them.
SEVERITY_ORDER = ("high", "medium", "low", "improvement")


def _metric_names(results: AssessmentResults) -> dict[tuple[str, str], tuple[str, str]]:
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
        from amulet import registry

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
    names = _metric_names(results)
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
            f"paired t-test p = {_num(p, '', 2)}, {n} seed{'s' if n != 1 else ''}"
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
                "certainty": f"one-sided binomial p = {_num(a.accuracy_p_value, '', 2)} (worst seed); degenerate "
                f"on seed{'s' if len(a.degenerate_seeds) != 1 else ''} {', '.join(map(str, a.degenerate_seeds))}",
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
            words += f" Privacy budget: epsilon = {_num(a.properties['privacy_epsilon'], '', 3)}."
        utility.append(f"{a.row}: {words}")
    return {"verdict": verdict, "ranked": items, "utility": utility}


def spec_appendix(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """The spec as compact ``(section, settings)`` rows: one row per section or list item, no null fields."""

    def settings(value: dict[str, Any]) -> str:
        kept = {k: v for k, v in value.items() if v is not None and v != [] and v != {} and v != ""}
        return human_params(kept, empty="defaults")

    rows: list[tuple[str, str]] = []
    for key, value in spec.items():
        if value is None or value == [] or value == {} or value == "" or key == "model_card":
            continue
        if isinstance(value, dict):
            rows.append((key, settings(value)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value, 1):
                if key == "defenses" and isinstance(item.get("stack"), list):
                    stack = " + ".join(f"{e.get('defense')} ({human_params(e.get('params'))})" for e in item["stack"])
                    label = item.get("name") or "+".join(str(e.get("defense")) for e in item["stack"])
                    rows.append((f"{key} {i}", f"{label}: {stack}"))
                else:
                    rows.append((f"{key} {i}", settings(item)))
        else:
            rows.append((key, human_value(value)))
    return rows


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("amulet.assess", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["signed"] = _signed
    env.filters["value"] = format_value
    env.filters["change"] = format_change
    env.globals["interval"] = _interval
    env.globals["finterval"] = format_interval
    env.globals["label"] = cell_label
    env.globals["text_colour"] = text_colour
    env.filters["words"] = lambda s: str(s).replace("_", " ")
    env.filters["brk"] = breakable
    env.filters["params"] = human_params
    env.filters["human"] = humanize_text
    env.filters["hvalue"] = human_value
    env.globals["metric_label"] = metric_label
    env.filters["capitalize_first"] = lambda s: str(s)[:1].upper() + str(s)[1:]
    return env


def _context(results: AssessmentResults, *, interactive: bool) -> dict[str, Any]:
    by_column: list[dict[str, Any]] = []
    for col in results.columns:
        metrics = [m for m in results.metrics if m.risk == col.risk and m.attack == col.attack]
        cells = [c for c in results.cells if c.risk == col.risk and c.attack == col.attack]
        by_column.append(
            {
                "column": col,
                "headline": [m for m in metrics if m.headline],
                "extra": [m for m in metrics if not m.headline],
                "problems": [c for c in cells if c.status != "ok"],
                "seconds": sum(c.seconds for c in cells),
            }
        )
    baseline = [m for m in results.metrics if m.row == BASELINE and m.headline]
    clause_use: dict[str, list[str]] = {}
    for check in results.checks:
        for clause in check.clauses:
            clause_use.setdefault(clause, []).append(check.id)
    svg = heatmap_svg(results)
    matrix_of: dict[str, dict[str, Any]] = {}
    for cell in results.matrix:
        matrix_of.setdefault(cell.row, {})[cell.column] = cell
    baseline_primary = {}
    for col in results.columns:
        for m in baseline:
            if (m.risk, m.attack, m.metric) == (col.risk, col.attack, col.primary_metric):
                baseline_primary[col.label] = m
    errors = [c for c in results.cells if c.status == "error"]
    summary: dict[str, list[str]] = {}
    for c in errors:
        summary.setdefault(c.reason, []).append(f"{c.row} x {c.risk}, seed {c.seed}")
    error_summary = [
        (reason, "; ".join(where[:4]) + (f"; and {len(where) - 4} more" if len(where) > 4 else ""))
        for reason, where in sorted(summary.items(), key=lambda kv: -len(kv[1]))
    ]
    return {
        "r": results,
        "interactive": interactive,
        "heatmap_html": plotly_heatmap_html(results) if interactive else "",
        "heatmap_svg_uri": "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode() if svg else "",
        "heatmap_rows": heatmap_rows(results),
        "colour": cell_colour,
        "columns": by_column,
        "baseline": baseline,
        "clauses": CLAUSES,
        "clause_use": clause_use,
        "disclaimer": DISCLAIMER,
        "exit_meaning": EXIT_MEANING[results.exit_code],
        "status_meaning": STATUS_MEANING[results.status],
        "error_cells": errors,
        "error_summary": error_summary,
        "matrix_of": matrix_of,
        "baseline_primary": baseline_primary,
        "row_status": {a.row: a for a in results.accuracy},
        "saturation": SATURATION,
        "any_privacy": any("privacy_epsilon" in a.properties for a in results.accuracy),
        "spec_rows": spec_appendix(results.spec),
        "tradeoffs": [
            {"title": t["title"], "uri": "data:image/svg+xml;base64," + base64.b64encode(t["svg"].encode()).decode()}
            for t in tradeoff_svgs(results)
        ],
        "rocs": [
            {**t, "uri": "data:image/svg+xml;base64," + base64.b64encode(t["svg"].encode()).decode()}
            for t in roc_svgs(results)
        ],
        "exposed": exposed_records(results),
        "records_per_row": RECORDS_PER_ROW,
        "summary": executive_summary(results),
        "card": {k: str(v) for k, v in (results.spec.get("model_card") or {}).items() if v not in (None, "")},
        "card_fields": MODEL_CARD_FIELDS,
        "metric_names": _metric_names(results),
        "problem_groups": _problem_groups(results),
        "problem_cells": [c for c in results.cells if c.status != "ok"],
        "strength_of": {c.label: strength_text(c.strength) for c in results.columns if c.strength is not None},
        "strength_pair": {(c.risk, c.attack): c.strength for c in results.columns if c.strength is not None},
    }


def _problem_groups(results: AssessmentResults) -> dict[str, list[dict[str, Any]]]:
    """Per column label: the cells without values, grouped by (row, status, reason) with their seeds."""
    groups: dict[str, dict[tuple[str, str, str], list[int]]] = {}
    labels = {(c.risk, c.attack): c.label for c in results.columns}
    for c in results.cells:
        if c.status == "ok":
            continue
        label = labels.get((c.risk, c.attack), f"{c.risk} ({c.attack})")
        groups.setdefault(label, {}).setdefault((c.row, c.status, c.reason), []).append(c.seed)
    return {
        label: [{"row": r, "status": s, "reason": why, "seeds": sorted(seeds)} for (r, s, why), seeds in g.items()]
        for label, g in groups.items()
    }


def render_html(results: AssessmentResults, *, interactive: bool = True) -> str:
    """The report as one HTML document (``interactive=False``: static SVG heatmap, no script, for the PDF)."""
    return _environment().get_template("report.html.j2").render(**_context(results, interactive=interactive))


def render_junit(results: AssessmentResults) -> str:
    """JUnit XML: one test case per policy verdict."""
    suites = ET.Element("testsuites", name=f"amulet: {results.name}")
    counts = results.counts
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="amulet.policy",
        tests=str(len(results.checks) + 1),
        failures=str(counts["checks_fail"] + counts["checks_inconclusive"]),
        errors=str(int(results.status != "complete")),
        skipped=str(counts["checks_not_run"]),
        timestamp=results.created,
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("spec_sha256", results.spec_sha256),
        ("data_sha256", results.data_sha256 or ""),
        ("seeds", ",".join(map(str, results.seeds))),
        ("exit_code", str(results.exit_code)),
        ("status", results.status),
        ("warnings", ",".join(w.code for w in results.warnings)),
    ):
        ET.SubElement(props, "property", name=name, value=value)
    # The assessment itself is a test case: a partial or failed assessment is an <error>, never a silent pass.
    status_case = ET.SubElement(suite, "testcase", classname="amulet.assessment", name="status", time="0.000")
    if results.status != "complete":
        reasons = sorted({c.reason for c in results.cells if c.status == "error" and c.reason})
        message = f"assessment {results.status}: " + "; ".join(reasons[:5])
        error = ET.SubElement(status_case, "error", message=message[:2000], type=results.status)
        error.text = "\n".join(
            f"{c.row} x {c.risk} seed {c.seed}: {c.reason}" for c in results.cells if c.status == "error"
        )
    status_out = ET.SubElement(status_case, "system-out")
    status_out.text = f"status={results.status}; " + "; ".join(f"{w.code}: {w.message}" for w in results.warnings)
    seconds = {(c.row, c.risk, c.attack): 0.0 for c in results.cells}
    for c in results.cells:
        seconds[(c.row, c.risk, c.attack)] += c.seconds
    for check in results.checks:
        name = (
            f"{check.metric}{' delta' if check.on == 'delta' else ''} {check.op} {check.threshold:g} [{check.attack}]"
        )
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"amulet.policy.{check.row}",
            name=name,
            time=f"{seconds.get((check.row, check.risk, check.attack), 0.0):.3f}",
        )
        if check.status in ("fail", "inconclusive"):
            failure = ET.SubElement(case, "failure", message=check.message, type=check.status)
            failure.text = check.message
        elif check.status == "not_run":
            ET.SubElement(case, "skipped", message=check.message)
        out = ET.SubElement(case, "system-out")
        out.text = f"status={check.status}; clauses={', '.join(check.clauses)}; {check.message}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render_json(results: AssessmentResults) -> str:
    """The results as JSON (with ``$schema``; NaN written as null)."""
    data = json.loads(results.model_dump_json())
    schema_id = results_json_schema()["$id"]
    return json.dumps({"$schema": schema_id, **data}, indent=2) + "\n"


def render_reports(
    results: AssessmentResults,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    key_path: str | Path | None = None,
) -> dict[str, Path]:
    """Write the reports of ``results`` into ``out_dir`` and sign their manifest.

    Args:
        results: The assessment's results.
        out_dir: Directory (created when missing); existing report files are replaced.
        formats: Any of ``"html"``, ``"pdf"``, ``"json"``, ``"junit"``.
        key_path: Ed25519 signing key (default: ``Settings.signing_key_path``; created when missing).

    Returns:
        Format -> path, plus ``"manifest"`` and ``"signature"``.

    Raises:
        ValueError: an unknown format.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown report format(s) {unknown}; allowed values: {', '.join(FORMATS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "json" in formats:
        paths["json"] = out / REPORT_FILES["json"]
        paths["json"].write_text(render_json(results), encoding="utf-8")
    if "junit" in formats:
        paths["junit"] = out / REPORT_FILES["junit"]
        paths["junit"].write_text(render_junit(results), encoding="utf-8")
    if "html" in formats:
        paths["html"] = out / REPORT_FILES["html"]
        paths["html"].write_text(render_html(results, interactive=True), encoding="utf-8")
    if "pdf" in formats:
        import logging

        from weasyprint import HTML

        for name in ("weasyprint", "fontTools"):
            logging.getLogger(name).setLevel(logging.ERROR)
        paths["pdf"] = out / REPORT_FILES["pdf"]
        HTML(string=render_html(results, interactive=False), base_url=str(out)).write_pdf(str(paths["pdf"]))
    manifest, signature = sign_report(
        out,
        [p.name for p in paths.values()],
        key_path=key_path,
        extra={
            "assessment": results.name,
            "spec_sha256": results.spec_sha256,
            "results_created": results.created,
            "exit_code": results.exit_code,
        },
    )
    paths["manifest"] = manifest
    paths["signature"] = signature
    return paths
