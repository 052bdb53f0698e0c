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
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

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
from amulet.assess._heatmap import heatmap_rows, heatmap_svg, plotly_heatmap_html
from amulet.assess._results import AssessmentResults, results_json_schema
from amulet.assess._signing import sign_report
from amulet.assess._spec import BASELINE

__all__ = ["FORMATS", "REPORT_FILES", "render_reports"]

FORMATS = ("html", "pdf", "json", "junit")
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf", "json": "results.json", "junit": "junit.xml"}

EXIT_MEANING = {
    0: "every policy check passed",
    1: "a policy check failed or was inconclusive",
    2: "an error: a training or a cell raised one (the assessment is partial or failed)",
    3: "a policy check could not run",
}

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
        "spec_yaml": yaml.safe_dump(results.spec, sort_keys=False, allow_unicode=True),
        "problem_cells": [c for c in results.cells if c.status != "ok"],
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
