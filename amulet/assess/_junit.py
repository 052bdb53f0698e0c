"""JUnit XML of an assessment: one test case per policy verdict, and one for the assessment's status.

CI systems read it as a test report: a failed or inconclusive check is a ``<failure>``, a check that could not
run is ``<skipped>``, and a partial or failed assessment is an ``<error>``, never a silent pass.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from amulet.assess._schema import AssessmentResults

__all__ = ["render_junit"]


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
