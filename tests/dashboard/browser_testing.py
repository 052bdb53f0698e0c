"""Helpers of the dashboard's browser tests: headless Chromium (Debian's build, driven by Playwright) kept on
the loopback interface, and the user's gestures on Streamlit widgets."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
from dashboard_testing import REPO, Service
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: Mark of every browser test module.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is missing (scripts/install_system.sh)"
)

expect.set_options(timeout=60_000)


def wait_idle(page: Page, timeout: float = 60_000) -> None:
    """Wait until Streamlit finished the current script run."""
    page.wait_for_timeout(300)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=timeout)


def open_cell(page: Page, chart: Locator, index: int, title: str, attempts: int = 3) -> None:
    """Click the heatmap's cell marker ``index`` until the drill-down titled ``title`` shows.

    The click waits for Streamlit to finish the previous run first; a click that still lands while the chart is
    being drawn again (seen on a loaded machine) is lost, as it would be for a user, who clicks again.
    """
    for attempt in range(attempts):
        wait_idle(page)
        chart.locator(".scatterlayer .point").nth(index).click(force=True)
        try:
            expect(page.get_by_text(title, exact=True)).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit select box or multiselect labelled ``label``."""
    box = page.locator('[data-testid="stMultiSelect"], [data-testid="stSelectbox"]').filter(has_text=label).first
    box.locator("input").first.click()
    box.locator("input").first.fill(option)
    page.get_by_role("option", name=re.compile(re.escape(option), re.IGNORECASE)).first.click()
    page.keyboard.press("Escape")
    wait_idle(page)


def launch(page: Page, screenshot: str) -> None:
    """Click "Launch assessment"; when it is disabled, fail with the page's warnings (they say why) rather than
    time out on the click."""
    button = page.get_by_role("button", name="Launch assessment")
    wait_idle(page)
    if not button.is_enabled():
        for expander in page.locator('[data-testid="stExpander"] summary').all():
            expander.click()
        page.screenshot(path=ARTIFACTS / screenshot, full_page=True)
        alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
        pytest.fail(f"'Launch assessment' is disabled; the page says: {alerts}")
    button.click()


def set_number(page: Page, label: str, value: str) -> None:
    """Type ``value`` into the number input labelled ``label`` and commit it."""
    field = page.get_by_role("spinbutton", name=label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_idle(page)


def go(page: Page, title: str) -> None:
    """Open a page of the dashboard from the navigation."""
    page.get_by_role("link", name=title).first.click()
    wait_idle(page)


def connect(page: Page, api: Service, dashboard_server: str) -> None:
    """Open the dashboard and connect (the URL is pre-filled from AMULET_API_URL)."""
    page.goto(dashboard_server)
    expect(page.get_by_text("Connect to Amulet")).to_be_visible()
    expect(page.get_by_role("textbox", name="API URL")).to_have_value(api.url)
    page.get_by_role("textbox", name="API token").fill(api.token)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_text(f"Connected to {api.url}").first).to_be_visible()


@contextmanager
def chromium() -> Iterator[tuple[Browser, Callable[[], BrowserContext]]]:
    """Headless Chromium and a factory of its contexts (each a fresh browser profile: cookies, cache, storage);
    any request a context makes off the loopback interface is blocked and fails the test at the end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    foreign: list[str] = []

    def guard(route, request) -> None:
        host = urlparse(request.url).hostname or ""
        if request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            foreign.append(request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)

        def new_context() -> BrowserContext:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            context.route("**/*", guard)
            return context

        try:
            yield browser, new_context
        finally:
            browser.close()
    assert foreign == [], f"the dashboard made non-loopback requests: {foreign}"


def in_chromium(scenario: Callable[[Page], None], failure: str) -> None:
    """Run ``scenario`` in a fresh headless Chromium page; fail on any request that leaves the loopback."""
    with chromium() as (_, new_context):
        page = new_context().new_page()
        page.set_default_timeout(60_000)
        try:
            scenario(page)
        except Exception:
            page.screenshot(path=ARTIFACTS / failure, full_page=True)
            raise
