"""Reports from one :class:`AssessmentResults`: HTML, PDF, JSON, JUnit XML, and the signed manifest.

* ``report.html``: self-contained (plotly.js and the figure inline, no network), interactive heatmap.
* ``report.pdf``: the same content through WeasyPrint, with the heatmap as an SVG drawn here.
* ``results.json``: the results object (``schema_version``; JSON Schema from :func:`results_json_schema`).
* ``junit.xml``: one ``<testcase>`` per policy verdict (fail/inconclusive -> ``<failure>``, not run -> ``<skipped>``).
* ``manifest.json`` + ``manifest.json.sig``: SHA-256 of every file, signed with Ed25519.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

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
from amulet.assess._humanize import (
    breakable,
    human_params,
    human_value,
    humanize_text,
    metric_label,
    number_interval,
    plain_number,
    signed_number,
)
from amulet.assess._junit import render_junit
from amulet.assess._schema import AssessmentResults, results_json_schema
from amulet.assess._signing import sign_report
from amulet.assess._spec import BASELINE
from amulet.assess._strength import strength_text
from amulet.assess._summary import executive_summary, metric_names

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


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("amulet.assess", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = plain_number
    env.filters["signed"] = signed_number
    env.filters["value"] = format_value
    env.filters["change"] = format_change
    env.globals["interval"] = number_interval
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
        "metric_names": metric_names(results),
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
        # Lazy for import cost: WeasyPrint loads Cairo, Pango and fonts, which only the PDF needs.
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
