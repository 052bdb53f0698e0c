"""ROC curves and the most exposed records: from the LiRA cell through results.json into the HTML and PDF report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from amulet.utils import roc_curve_points

from .conftest import tiny_spec

PDFTOTEXT = shutil.which("pdftotext")

#: Baseline and one membership defense (the test-only logit shrink), LiRA with a small budget, one seed.
SPEC = tiny_spec(
    name="exposure run",
    seeds=[0],
    defenses=[{"defense": "t_shrink", "params": {"factor": 0.1}}],
    risks=[{"risk": "membership_inference", "attack": "lira", "params": {"num_shadow": 4, "max_members": 300}}],
)


@pytest.fixture(scope="module")
def exposure_run(tmp_path_factory: pytest.TempPathFactory, assess_cache: Path) -> dict[str, Any]:
    from amulet.assess import load_spec, render_reports, run_assessment

    from .conftest import _registered

    with _registered():
        results = run_assessment(load_spec(SPEC), cache_dir=assess_cache, device="cpu")
        out = tmp_path_factory.mktemp("exposure-report")
        paths = render_reports(results, out)
    return {"results": results, "paths": paths}


def test_roc_points_are_the_step_curve_at_a_log_grid():
    rng = np.random.default_rng(3)
    scores = np.r_[rng.normal(0.7, 1, 400), rng.normal(0, 1, 600)]
    labels = np.r_[np.ones(400), np.zeros(600)].astype(int)
    fpr, tpr = roc_curve_points(scores, labels, max_points=50)
    full_fpr, full_tpr, _ = roc_curve(labels, scores)
    assert 2 <= len(fpr) <= 50 and len(fpr) == len(tpr)
    assert all(np.diff(fpr) > 0), "fpr must increase strictly"
    assert fpr[0] >= 1 / 600 and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    for f, t in zip(fpr, tpr, strict=True):
        assert t == pytest.approx(full_tpr[full_fpr <= f + 1e-12].max())  # the curve's value at f, never more
    assert np.all(np.diff(tpr) >= 0)


def test_roc_points_reject_what_has_no_curve():
    with pytest.raises(ValueError, match="both classes"):
        roc_curve_points(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        roc_curve_points(np.array([np.nan, 0.2]), np.array([1, 0]))
    with pytest.raises(ValueError, match="same length"):
        roc_curve_points(np.array([0.1, 0.2, 0.3]), np.array([1, 0]))


def test_lira_cells_carry_a_roc_curve_and_named_records(exposure_run: dict[str, Any]):
    from amulet.assess._data import load_bundle, split_indices

    results = exposure_run["results"]
    cells = [c for c in results.cells if c.attack == "lira"]
    assert {c.row for c in cells} == {"baseline", "t_shrink"} and all(c.status == "ok" for c in cells)
    dataset = _dataset_spec()
    bundle = load_bundle(dataset)
    members, _ = split_indices(bundle, 0, dataset.member_fraction)
    for cell in cells:
        roc = cell.roc
        assert roc is not None
        assert roc.n_positive == roc.n_negative == cell.metrics["n_candidates"] / 2 == 300
        assert roc.fpr[0] >= 1 / 300 and (roc.fpr[-1], roc.tpr[-1]) == (1.0, 1.0)
        records = cell.vulnerable_records
        assert len(records) == 10
        scores = [r.score for r in records]
        assert scores == sorted(scores, reverse=True)
        assert all(r.rank >= 1 for r in records) and len({r.rank for r in records}) == 10
        for r in records:  # named by their row in the training split, and they are members of this seed
            assert r.record in set(members.tolist())
            assert r.label == int(bundle.train.y[r.record])


def _dataset_spec() -> Any:
    from amulet.assess import load_spec

    # The same dataset section as SPEC, without its test-only defense (registered only inside the fixture).
    return load_spec(tiny_spec(risks=SPEC["risks"])).dataset


def test_curves_and_records_survive_results_json(exposure_run: dict[str, Any]):
    from amulet.assess import AssessmentResults

    data = json.loads(exposure_run["paths"]["json"].read_text())
    assert data["schema_version"] == "1.3"
    back = AssessmentResults.model_validate(data)
    for before, after in zip(exposure_run["results"].cells, back.cells, strict=True):
        assert before.roc == after.roc and before.vulnerable_records == after.vulnerable_records


def test_html_report_draws_the_roc_and_lists_the_records(exposure_run: dict[str, Any]):
    html = exposure_run["paths"]["html"].read_text()
    assert "Membership inference: ROC curves" in html and "Most exposed training records" in html
    top = next(c for c in exposure_run["results"].cells if c.row == "baseline").vulnerable_records[0]
    assert f"{top.record} ({top.label})" in html


@pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext not installed (apt-get install poppler-utils)")
def test_pdf_report_has_the_figure_and_the_table(exposure_run: dict[str, Any]):
    assert PDFTOTEXT is not None
    text = subprocess.run(
        [PDFTOTEXT, "-layout", str(exposure_run["paths"]["pdf"]), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Membership inference: ROC curves" in text and "false-positive rate (log)" in text
    top = next(c for c in exposure_run["results"].cells if c.row == "t_shrink").vulnerable_records[0]
    assert f"{top.record} ({top.label})" in text
    from .test_report_layout import _pages

    for number, lines in enumerate(_pages(exposure_run["paths"]["pdf"]), 1):  # the new sections add no thin page
        assert len(lines) >= 5, (number, lines)
