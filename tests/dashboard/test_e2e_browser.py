"""End to end in real headless Chromium (Playwright + Debian's chromium): connect, upload the census CSV,
start a quick assessment, follow it to completion, see the heatmap, download the PDF report; and upload an
exported .pt2 model of an architecture that is not in the registry, assess it, reach the heatmap.

Runs against the real API (uvicorn), a real Celery worker (`amulet worker`, SQLite broker) and the
dashboard under `streamlit run`. Every request the browser makes is recorded: anything that is not on
the loopback interface is blocked and fails the test (no CDN, no telemetry). Screenshots go to
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from dashboard_testing import Service

from amulet.assess import verify_report

pytest.importorskip("playwright.sync_api")
from browser_testing import (
    ARTIFACTS,
    connect,
    go,
    in_chromium,
    launch,
    needs_chromium,
    open_cell,
    pick,
    set_number,
    wait_idle,
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.integration, needs_chromium]


def test_dashboard_end_to_end_in_chromium(
    api: Service, worker: object, dashboard_server: str, census_csv: Path
) -> None:
    in_chromium(lambda page: run_scenario(page, api, dashboard_server, census_csv), "failure.png")


def test_own_model_pt2_to_heatmap_in_chromium(
    api: Service, worker: object, dashboard_server: str, census_csv: Path, tmp_path: Path
) -> None:
    """A model of an architecture that is not in the registry (a residual MLP with LayerNorm and GELU),
    exported to .pt2 in the test for the census CSV's features, uploaded on the Models page (input shape and
    parameters shown), assessed against evasion with outlier removal, up to the heatmap. The CSV goes in
    through the API (the other browser test covers the dataset upload), one seed: as fast as it gets."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
    from graph_models import n_parameters, pt2_file, residual_mlp  # tests/backend's helper: after the path insert

    headers = {"Authorization": f"Bearer {api.token}"}
    dataset = httpx.post(
        f"{api.url}/datasets",
        files={"file": (census_csv.name, census_csv.read_bytes())},
        data={"name": "census for own model", "label": "income", "sensitive": "race,sex"},
        headers=headers,
        timeout=120,
    )
    assert dataset.status_code == 201, dataset.text
    n = dataset.json()["summary"]["num_features"]
    model = pt2_file(tmp_path, n_features=n, seed=5)
    parameters = n_parameters(residual_mlp(n, 2, seed=5))

    def scenario(page: Page) -> None:
        connect(page, api, dashboard_server)
        go(page, "Models & data")
        page.get_by_role("tab", name="Models").click()
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Exported model")
        uploader.locator("input[type=file]").set_input_files(model)
        wait_idle(page)
        page.get_by_role("textbox", name="Name").last.fill("resmlp census")
        page.get_by_role("button", name="Upload model").click()
        expect(page.get_by_text("Uploaded model resmlp census")).to_be_visible()
        metrics = page.locator('[data-testid="stMetric"]')
        expect(metrics.filter(has_text="Input shape")).to_contain_text(f"[{n}]")
        expect(metrics.filter(has_text="Parameters")).to_contain_text(f"{parameters:,}")
        page.screenshot(path=ARTIFACTS / "own-01-model.png", full_page=True)

        go(page, "New assessment")
        page.get_by_text("Uploaded dataset", exact=True).click()
        wait_idle(page)
        pick(page, "Dataset", "census for own model")
        set_number(page, "Training rows", "300")
        set_number(page, "Test rows", "200")
        page.get_by_text("Uploaded model", exact=True).click()
        wait_idle(page)
        pick(page, "Uploaded model", "resmlp census")
        pick(page, "Defenses", "Outlier removal")
        pick(page, "Risks", "Evasion")
        seeds = page.get_by_role("textbox", name="Seeds", exact=True)
        seeds.fill("0")
        seeds.press("Enter")
        wait_idle(page)
        expect(page.locator('[data-testid="stMetric"]').filter(has_text="Cells")).to_contain_text("2")
        launch(page, "own-model-disabled.png")
        expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
        expect(page.get_by_text("Finished. The interaction matrix is ready.")).to_be_visible(timeout=240_000)

        page.get_by_role("link", name="Open the results").click()
        wait_idle(page)
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        expect(chart).to_be_visible()
        expect(chart.locator(".heatmaplayer, g.hm").first).to_be_attached()
        expect(chart).to_contain_text("outlier_removal")
        expect(chart).to_contain_text("evasion")  # column labels break before the attack: "evasion" / "(pgd)"
        expect(chart).to_contain_text("(pgd)")
        page.screenshot(path=ARTIFACTS / "own-02-results.png", full_page=True)

    in_chromium(scenario, "own-model-failure.png")


def run_scenario(page: Page, api: Service, dashboard_server: str, census_csv: Path) -> None:
    """The user's path through the dashboard, from connecting to the PDF report."""
    connect(page, api, dashboard_server)
    page.screenshot(path=ARTIFACTS / "01-connect.png", full_page=True)

    # Upload the census CSV: label guessed from the preview, sensitive columns chosen.
    go(page, "Models & data")
    page.locator('[data-testid="stFileUploader"] input[type=file]').first.set_input_files(census_csv)
    wait_idle(page)
    expect(page.get_by_text("1,200 rows")).to_be_visible()
    pick(page, "Sensitive columns", "race")
    pick(page, "Sensitive columns", "sex")
    page.get_by_role("button", name="Upload dataset").click()
    expect(page.get_by_text("Uploaded dataset census_small")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "02-data.png", full_page=True)

    # New quick assessment on the uploaded data: adversarial training x evasion and subgroup gaps, two seeds.
    go(page, "New assessment")
    page.get_by_text("Uploaded dataset", exact=True).click()
    wait_idle(page)
    set_number(page, "Training rows", "300")
    set_number(page, "Test rows", "200")
    pick(page, "Defenses", "Adversarial training")
    pick(page, "Risks", "Evasion")
    pick(page, "Risks", "Discriminatory behaviour")
    seeds = page.get_by_role("textbox", name="Seeds", exact=True)
    seeds.fill("0, 1")
    seeds.press("Enter")
    wait_idle(page)
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Cells")).to_contain_text("8")
    page.screenshot(path=ARTIFACTS / "03-new-assessment.png", full_page=True)
    launch(page, "launch-disabled.png")

    # Run page: live progress until the worker is done.
    expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()
    expect(page.locator('[data-testid="stProgress"]').first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "04-run.png", full_page=True)
    expect(page.get_by_text("Finished. The interaction matrix is ready.")).to_be_visible(timeout=240_000)

    # Results: the heatmap, then the PDF report.
    page.get_by_role("link", name="Open the results").click()
    wait_idle(page)
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)  # an auditor's app: no Streamlit chrome
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    expect(chart).to_be_visible()
    expect(chart.locator(".heatmaplayer, g.hm").first).to_be_attached()
    expect(chart).to_contain_text("adversarial_training")
    expect(chart).to_contain_text("evasion")  # column labels break before the attack: "evasion" / "(pgd)"
    expect(chart).to_contain_text("(pgd)")
    expect(page.get_by_text("adversarial_training x evasion (pgd)")).to_be_visible()
    # A click on the other cell of the row opens its detail (each cell carries a clickable marker).
    # (exact: the cell's hover label also holds the words)
    open_cell(page, chart, 1, "adversarial_training x discriminatory_behavior (subgroup_metrics)")
    open_cell(page, chart, 0, "adversarial_training x evasion (pgd)")
    page.screenshot(path=ARTIFACTS / "05-results-1280.png", full_page=True)
    with page.expect_download(timeout=120_000) as download_info:
        page.get_by_role("button", name="PDF report").click()
    download = download_info.value
    pdf = ARTIFACTS / "report.pdf"
    download.save_as(pdf)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000
    # The signed bundle: one zip that verifies offline, holding the same PDF.
    with page.expect_download(timeout=120_000) as download_info:
        page.get_by_role("button", name="Signed bundle").click()
    bundle = ARTIFACTS / "bundle.zip"
    download_info.value.save_as(bundle)
    served_key = httpx.get(f"{api.url}/signing-key", timeout=30)
    assert served_key.status_code == 200, served_key.text
    (ARTIFACTS / "server-key.pem").write_text(served_key.json()["public_key_pem"])
    verified = verify_report(bundle, public_key=ARTIFACTS / "server-key.pem")
    assert verified.ok, verified.problems
    with zipfile.ZipFile(bundle) as zf:
        assert zf.read("report.pdf") == pdf.read_bytes()

    # A narrow window: the page still renders the heatmap without a horizontal scroll bar.
    page.set_viewport_size({"width": 420, "height": 800})
    page.wait_for_timeout(1500)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] <= 420
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"horizontal overflow of {overflow}px at 420px"
    page.screenshot(path=ARTIFACTS / "06-results-420.png", full_page=True)

    # A reload starts a new Streamlit session: the sign-in survives it (the URL's handle, never the token),
    # and the Results page comes back with the heatmap.
    assert api.token not in page.url and "s=" in page.url
    page.reload()
    expect(page.get_by_text(f"Connected to {api.url}").first).to_be_visible(timeout=60_000)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=60_000)
