"""Reports from one real run: self-contained HTML (rendered in headless Chromium), PDF (rendered with pdftoppm),
JSON against its schema, JUnit XML, compliance and reproducibility sections, and the signed manifest."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from amulet.assess import render_reports, results_json_schema, verify_report
from amulet.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")


def _strong_colour_pixels(path: Path) -> int:
    """Pixels that are clearly red or clearly blue (the heatmap's diverging scale), not grey/black/white."""
    image = Image.open(path).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if abs(r - b) > 70 and max(r, b) > 110)


def test_every_format_is_written_and_the_manifest_verifies(shared_run: dict[str, Any]):
    paths = shared_run["paths"]
    assert {p.name for p in paths.values()} == {
        "report.html", "report.pdf", "results.json", "junit.xml", "manifest.json", "manifest.json.sig",
    }  # fmt: skip
    result = verify_report(shared_run["out"])
    assert result.ok, result.problems
    assert result.trusted_key.startswith("local signing key")
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["algorithm"] == "Ed25519"
    assert {f["path"] for f in manifest["files"]} == {"report.html", "report.pdf", "results.json", "junit.xml"}
    runner = CliRunner()
    out = runner.invoke(app, ["verify-report", str(shared_run["out"])])
    assert out.exit_code == 0, out.output
    assert "OK: 4 files" in out.output


@pytest.mark.parametrize("victim", ["report.html", "results.json", "manifest.json"])
def test_a_tampered_report_fails_verify_report(shared_run: dict[str, Any], tmp_path: Path, victim: str):
    copy = tmp_path / "report"
    shutil.copytree(shared_run["out"], copy)
    target = copy / victim
    if victim == "results.json":
        target.write_text(target.read_text().replace('"status": "fail"', '"status": "pass"'))
    elif victim == "manifest.json":
        data = json.loads(target.read_text())
        data["files"] = [f for f in data["files"] if f["path"] != "junit.xml"]
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        target.write_bytes(target.read_bytes().replace(b"Interaction matrix", b"Interaction matrlx", 1))
    assert not verify_report(copy).ok
    out = CliRunner().invoke(app, ["verify-report", str(copy)])
    assert out.exit_code == 1
    assert "FAILED" in out.output


def test_a_report_re_signed_with_another_key_fails_against_the_trusted_key(shared_run: dict[str, Any], tmp_path: Path):
    copy = tmp_path / "report"
    render_reports(shared_run["results"], copy, formats=("json",), key_path=tmp_path / "attacker.pem")
    assert verify_report(copy, key_path=tmp_path / "attacker.pem").ok
    result = verify_report(copy)  # trusts the local (settings) key
    assert not result.ok
    assert any("different key" in p for p in result.problems)


def test_html_is_self_contained(shared_run: dict[str, Any]):
    html = shared_run["paths"]["html"].read_text()
    assert re.search(r"<script[^>]+src=", html) is None
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", html, flags=re.S)  # drop inline JS bodies
    assert re.search(r"<link[^>]+href=", markup) is None
    assert re.search(r"""(src|href)=["']?(https?:)?//""", markup) is None
    assert "@import" not in markup and "url(" not in markup
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inline


def test_html_and_pdf_carry_every_section(shared_run: dict[str, Any]):
    html = shared_run["paths"]["html"].read_text()
    results = shared_run["results"]
    for text in (
        "Interaction matrix", "Policy verdicts", "Utility first: clean accuracy of each row", "Findings",
        "Baseline (undefended model)", "Assessment status: PARTIAL", "DEGENERATE", "majority rate",
        "Results per risk", "Scope and threat model", "Regulatory crosswalk", "Reproducibility",
        "EU AI Act", "Art. 15", "GDPR", "Art. 35", "NIST AI RMF", "MEASURE 2.7", "ISO/IEC 42001",
        "not legal advice", "white-box: weights and gradients of the target", "adversary",
        results.spec_sha256, results.data_sha256, *results.reproducibility["model_sha256"].values(),
        "inconclusive", "needs image data", "RuntimeError: boom",
    ):  # fmt: skip
        assert text in html, text


def test_json_matches_its_versioned_schema(shared_run: dict[str, Any]):
    data = json.loads(shared_run["paths"]["json"].read_text())
    assert data["schema_version"] == "1.3" and data["kind"] == "amulet.assessment-results"
    assert data["$schema"].endswith("assessment-results-v1.3.json")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, results_json_schema())


def test_junit_has_one_testcase_per_check_and_one_for_the_status(shared_run: dict[str, Any]):
    results = shared_run["results"]
    root = ET.fromstring(shared_run["paths"]["junit"].read_text())
    cases = root.findall("./testsuite/testcase")
    # robust-pass, robust-fail, recon-not-run x 3 rows, constant; plus the assessment's status.
    assert len(cases) == len(results.checks) + 1 == 1 + 1 + 3 + 1 + 1
    assert {c.status for c in results.checks} == {"pass", "fail", "not_run", "inconclusive"}
    suite = root.find("testsuite")
    assert suite.get("failures") == "3" and suite.get("skipped") == "2" and suite.get("tests") == "7"
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 3
    (violated,) = [c for c in failed if c.find("failure").get("type") == "fail"]
    assert "robust_accuracy" in violated.get("name") and "violates" in violated.find("failure").get("message")
    # The checks on the degenerate (constant) row are inconclusive failures, never passes.
    degenerate = [c for c in failed if c.get("classname") == "amulet.policy.t_constant"]
    assert len(degenerate) == 2 and all(c.find("failure").get("type") == "inconclusive" for c in degenerate)
    assert all("degenerate" in c.find("failure").get("message") for c in degenerate)
    assert len([c for c in cases if c.find("skipped") is not None]) == 2
    # The errored cells make the assessment partial: an <error> test case, not a silent pass.
    (status,) = [c for c in cases if c.get("classname") == "amulet.assessment"]
    assert status.find("error").get("type") == "partial" and "boom" in status.find("error").get("message")
    assert suite.get("errors") == "1"
    assert results.status == "partial" and results.exit_code == 1


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
         "--virtual-time-budget=8000", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_the_heatmap_in_headless_chromium_without_network(shared_run: dict[str, Any], tmp_path: Path):
    url = shared_run["paths"]["html"].resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path)
    assert 'class="hm"' in dom.stdout, dom.stderr[-2000:]  # plotly drew the heatmap trace
    shot = tmp_path / "shot.png"
    done = _chromium(["--window-size=1300,1000", f"--screenshot={shot}", url], tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    assert _strong_colour_pixels(shot) > 3000  # the coloured cells are on screen


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm not installed (apt-get install -y poppler-utils)")
def test_pdf_renders_with_the_heatmap_on_its_first_page(shared_run: dict[str, Any], tmp_path: Path):
    pdf = shared_run["paths"]["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run([PDFTOPPM, "-r", "60", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    assert _strong_colour_pixels(pages[0]) > 800
    pdftotext = shutil.which("pdftotext")
    if pdftotext:
        text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "Regulatory crosswalk" in text and "Reproducibility" in text
