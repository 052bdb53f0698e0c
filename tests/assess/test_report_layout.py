"""The PDF report read page by page as a reader sees it (text from ``pdftotext -layout``), its executive summary,
its model card, and the human formatting helpers behind them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from amulet.assess import AssessmentSpec, render_reports
from amulet.assess._humanize import breakable, human_params, humanize_text
from amulet.assess._report import render_html, spec_appendix
from amulet.assess._summary import executive_summary

from .conftest import tiny_spec

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(
    PDFTOTEXT is None, reason="pdftotext not installed (apt-get install poppler-utils)"
)

#: Words the old PDF broke inside narrow columns ("adversar ial_traini ng", "utili ty", "majorit y rate", ...).
WORDS = ("adversarial", "utility", "majority", "interaction", "measured", "baseline", "Discriminatory",
         "reconstruction", "inconclusive", "susceptible", "accuracy")  # fmt: skip
#: Proper prefixes of those words that are words themselves.
REAL_WORDS = {"measure", "base", "interact", "reconstruct"}
#: A dict item as Python prints it ("'clip_max': None"), not a quoted name in a sentence ("'baseline': this ...").
DICT_ITEM = re.compile(r"'\w+': ([-\d\[{']|None|True|False)")
FOOTER = re.compile(r"^\s*page \d+ of \d+\s*$")


def _pages(pdf: Path) -> list[list[str]]:
    """The non-empty text lines of each page (footer left out)."""
    assert PDFTOTEXT is not None
    text = subprocess.run([PDFTOTEXT, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")
    if pages and not pages[-1].strip():
        pages = pages[:-1]  # pdftotext ends the last page with a form feed
    return [[line for line in p.splitlines() if line.strip() and not FOOTER.match(line)] for p in pages]


def _tokens(lines: list[str]) -> list[str]:
    return [t.strip("()[],;:.*") for line in lines for t in line.split()]


@needs_pdftotext
def test_every_pdf_page_reads_cleanly(shared_run: dict[str, Any]):
    pages = _pages(shared_run["paths"]["pdf"])
    results = shared_run["results"]
    assert len(pages) >= 3
    for number, lines in enumerate(pages, 1):
        text = "\n".join(lines)
        # No raw Python dict or list of parameters anywhere.
        assert "{'" not in text and "None}" not in text and "{}" not in text, (number, text)
        assert not DICT_ITEM.search(text), (number, DICT_ITEM.search(text))
        # No near-empty page (the old report ended on a page holding only "- 0 - 1").
        assert len(lines) >= 5, (number, lines)
        # No word broken inside a narrow column: a word is either whole or split after an underscore.
        for token in _tokens(lines):
            for word in (*WORDS, *(r.name for r in results.rows)):
                if 3 <= len(token) < len(word) and word.startswith(token) and token not in REAL_WORDS:
                    at_underscore = token.endswith("_") or word[len(token)] == "_"
                    assert at_underscore, f"page {number}: {word!r} broken as {token!r}\n{text}"
        # A page never starts inside a table row (a continuation: a bare number, change or interval).
        if number > 1:
            assert not re.match(r"^\s*([+-]?\d|\[|%|_)", lines[0]), (number, lines[:3])
    everything = "\n".join("\n".join(p) for p in pages)
    # Row labels intact: each row name appears whole at least once (its table rows never break it).
    for row in results.rows:
        assert re.search(rf"(^|\s){re.escape(row.name)}(\s|$)", everything, re.M), row.name
    # Human names with units, and parameters as words.
    assert "Robust accuracy (%)" in everything and "epsilon: 0.01, iterations: 3" in everything
    assert "step_size: none" in everything and "Parameters: defaults" in everything


@needs_pdftotext
def test_the_spec_is_a_compact_appendix_on_the_last_page(shared_run: dict[str, Any]):
    pages = _pages(shared_run["paths"]["pdf"])
    (start,) = [i for i, p in enumerate(pages) if any("Appendix: the assessment spec" in line for line in p)]
    assert start >= len(pages) - 2  # at most the last two pages (it is one line per section, in small type)
    appendix = "\n".join("\n".join(p) for p in pages[start:])
    assert "training_size: 1000" in appendix and "risks 1" in appendix and "policy 4" in appendix
    assert "null" not in appendix and "{}" not in appendix


@needs_pdftotext
def test_executive_summary_opens_the_report_after_the_status(shared_run: dict[str, Any]):
    pages = _pages(shared_run["paths"]["pdf"])
    text = "\n".join("\n".join(p) for p in pages)
    order = [text.index(s) for s in ("Assessment status: PARTIAL", "Executive summary", "Findings by severity",
                                     "Utility cost of each defense", "Model card", "Utility first")]  # fmt: skip
    assert order == sorted(order)
    assert "Verdict. NOT ACCEPTABLE as specified. Of 6 policy checks, 1 passed, 1 failed, 2 inconclusive and 2" in text
    ranked = text[text.index("Findings by severity") : text.index("Utility cost of each defense")]
    # Highs (the degenerate constant row, the failed check) come before the improvement (adversarial training).
    assert ranked.index("HIGH") < ranked.index("IMPROVEMENT")
    assert ranked.index("t_constant: the model is degenerate") < ranked.index("IMPROVEMENT")
    assert ranked.index("policy check robust-fail:baseline fails") < ranked.index("IMPROVEMENT")
    # Each finding says how sure we are, what it means and what to do; the mitigation comes from the catalogue.
    assert re.search(r"paired t-test p = [0-9.e-]+, 3 seeds", ranked)
    assert "Add a defense that targets it: PGD adversarial training (adversarial_training)" in ranked
    for label in ("Measured:", "How sure:", "What it means:", "Suggested mitigation:"):
        assert ranked.count(label) == 3, label
    utility = text[text.index("Utility cost of each defense") : text.index("Model card")]
    assert "adversarial_training: no significant accuracy change" in utility
    assert "t_constant: unusable, the model is degenerate" in utility
    card = text[text.index("Model card") : text.index("Utility first")]
    assert card.count("not provided") == 7


def test_a_harmful_finding_is_ranked_high_with_a_catalogue_mitigation(shared_run: dict[str, Any]):
    results = shared_run["results"]
    (finding,) = results.findings
    # The same measured cell, read as if the defense had made the model 12 pts less robust (unintended).
    worse = finding.model_copy(
        update={
            "row": "t_shrink_like",
            "risk": "evasion",
            "delta": -12.0,
            "value": finding.baseline - 12.0,
            "delta_ci_low": -14.0,
            "delta_ci_high": -10.0,
            "susceptibility_change": 0.12,
            "direction": "more_susceptible",
            "intended": False,
        },
    )
    summary = executive_summary(results.model_copy(update={"findings": [worse, finding]}))
    ranked = summary["ranked"]
    (first,) = [it for it in ranked if it["title"].startswith("t_shrink_like: Robust accuracy")]
    assert first["severity"] == "high"
    assert ranked.index(first) < min(i for i, it in enumerate(ranked) if it["severity"] != "high")
    assert "more susceptible to evasion" in first["meaning"] and "unintended side effect" in first["meaning"]
    assert "PGD adversarial training (adversarial_training)" in first["mitigation"]
    assert summary["ranked"][-1]["severity"] == "improvement"
    assert "1 defense-risk interaction made the model significantly more susceptible" in summary["verdict"]
    assert summary["verdict"].startswith("NOT ACCEPTABLE as specified.")
    passing = results.model_copy(update={"checks": [c for c in results.checks if c.status == "pass"]})
    assert executive_summary(passing)["verdict"].startswith("ACCEPTABLE as specified. Of 1 policy check, 1 passed")


def test_the_model_card_comes_from_the_spec(shared_run: dict[str, Any], tmp_path: Path):
    card = {"name": "census income classifier", "version": "2.3.1", "owner": "risk analytics",
            "intended_use": "pre-screening of loan applications", "training_data": "UCI census income 1994",
            "assessor": "J. Doe", "sign_off": "pending review"}  # fmt: skip
    spec = AssessmentSpec.model_validate(tiny_spec(risks=[{"risk": "evasion"}], model_card=card))
    assert spec.model_card is not None and spec.model_card.intended_use == card["intended_use"]
    with pytest.raises(ValueError, match="owners"):
        AssessmentSpec.model_validate(tiny_spec(risks=[{"risk": "evasion"}], model_card={"owners": "x"}))
    results = shared_run["results"]
    with_card = results.model_copy(update={"spec": {**results.spec, "model_card": spec.model_dump()["model_card"]}})
    html = render_html(with_card, interactive=False)
    block = html[html.index('id="model-card"') : html.index('id="accuracy"')]
    for value in card.values():
        assert value in block
    assert "not provided" not in block
    partial = results.model_copy(update={"spec": {**results.spec, "model_card": {"name": "only a name"}}})
    block = render_html(partial, interactive=False)
    block = block[block.index('id="model-card"') : block.index('id="accuracy"')]
    assert "only a name" in block and block.count("not provided") == 6
    # The card is documentation: it never reaches the appendix's run settings twice, nor a cache key.
    assert all(section != "model_card" for section, _ in spec_appendix(with_card.spec))
    paths = render_reports(with_card, tmp_path, formats=("html",), key_path=tmp_path / "key.pem")
    assert "census income classifier" in paths["html"].read_text()


def test_human_formatting_helpers():
    assert human_params({"clip_max": None, "epsilon": 0.01, "flag": True}) == "clip_max: none, epsilon: 0.01, flag: yes"
    assert human_params({}) == "defaults"
    assert human_params({"config": {"hidden_layer_sizes": [32, 16]}}) == "config: (hidden_layer_sizes: [32, 16])"
    text = "Architecture 'linearnet' (capacity None, config {'hidden_layer_sizes': [32, 16]}); trained {not a dict"
    assert humanize_text(text) == (
        "Architecture 'linearnet' (capacity None, config hidden_layer_sizes: [32, 16]); trained {not a dict"
    )
    assert str(breakable("adversarial_training")) == "adversarial_<wbr>training"
    assert str(breakable("evasion.robust_accuracy 74.20%")) == "evasion.<wbr>robust_<wbr>accuracy 74.20%"
    assert str(breakable("<b>")) == "&lt;b&gt;"


def test_a_parameter_sweep_gets_trade_off_curves(shared_run: dict[str, Any], assess_cache: Path):
    from amulet.assess import load_spec, run_assessment
    from amulet.assess._heatmap import parameter_sweeps, tradeoff_svgs

    spec = tiny_spec(
        name="sweep",
        seeds=[0, 1],
        defenses=[{"defense": "adversarial_training", "params": {"epsilon": [0.005, 0.02, 0.05], "iterations": 2}}],
        risks=[
            {"risk": "evasion", "attack": "pgd", "params": {"iterations": 3, "max_samples": 200, "epsilon": 0.05}},
            {"risk": "discriminatory_behavior", "attack": "subgroup_metrics"},
        ],
    )
    results = run_assessment(load_spec(spec), cache_dir=assess_cache, device="cpu")
    (sweep,) = parameter_sweeps(results)
    assert sweep["defense"] == "adversarial_training" and sweep["varying"] == ["epsilon"]
    assert [label for _, label in sweep["rows"]] == ["epsilon: 0.005", "epsilon: 0.02", "epsilon: 0.05"]
    curves = tradeoff_svgs(results)
    assert [c["title"] for c in curves] == [
        "adversarial_training: Robust accuracy vs clean accuracy (evasion (pgd))",
        "adversarial_training: Demographic parity difference vs clean accuracy (discriminatory_behavior "
        "(subgroup_metrics))",
    ]
    # Points sit where the numbers are: x follows each row's clean accuracy (baseline square included).
    accuracy = {a.row: a.mean for a in results.accuracy}
    svg = curves[0]["svg"]
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
    (square,) = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="8"', svg)
    order = ["baseline", *(row for row, _ in sweep["rows"])]
    drawn = [float(square) + 4, *xs]
    assert sorted(order, key=lambda r: accuracy[r]) == sorted(order, key=lambda r: drawn[order.index(r)])
    html = render_html(results, interactive=False)
    assert "Trade-offs of parameter sweeps" in html and html.count("data:image/svg+xml;base64,") == 1 + len(curves)
    assert "Trade-offs of parameter sweeps" not in shared_run["paths"]["html"].read_text()  # no sweep there
