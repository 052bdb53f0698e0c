"""The New-assessment form in real headless Chromium: every number starts at the value the form gave it, even
when the browser draws the field late.

The defect this guards against: the form pre-sets its values through the session state, which Streamlit hands
to the browser once (a one-shot ``set_value`` on the run that set it); later runs declared only the number
input's default, its minimum. A browser that drew the field after a second run had replaced the first started
it at that minimum and sent it back: the learning rate came back as 0.0 (Launch disabled), and, unnoticed
because they are allowed, epochs and batch size as 1 and momentum as 0. It struck at random on a busy machine
(a reload, a second browser context, the first session of a fresh server). Here the number input's code is held
back until a second run has replaced the first, which makes the late drawing certain.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dashboard_testing import Service

pytest.importorskip("playwright.sync_api")
from browser_testing import ARTIFACTS, chromium, connect, go, needs_chromium, pick, wait_idle
from playwright.sync_api import Page, Route, expect

pytestmark = [pytest.mark.integration, needs_chromium]

#: The code of Streamlit's number input, loaded by the browser the first time a page shows one.
NUMBER_INPUT_CODE = "**/NumberInput.*.js"
#: The training section's fields as the spec schema's defaults give them (in the field's own formatting).
TRAINING_DEFAULTS = {"Epochs": "10", "Batch Size": "256", "Lr": "0.001", "Weight Decay": "0", "Momentum": "0.9"}


def _draw_numbers_late(page: Page, open_form: Callable[[], object]) -> None:
    """Open the form with the number input's code held back, make a second run (choosing a risk) replace the
    first while the numbers are not drawn yet, then let the browser draw them."""
    held: list[Route] = []
    page.context.route(NUMBER_INPUT_CODE, lambda route: held.append(route))  # answered below
    open_form()
    expect(page.get_by_role("heading", name="New assessment")).to_be_visible()
    # The browser asks for the code when the run reaches the first number field; on a loaded machine that can
    # come after the status widget looked idle once (seen after a reload), so wait for the request itself.
    for _ in range(150):
        if held:
            break
        page.wait_for_timeout(200)
    wait_idle(page)
    assert held, "the number input's code was not fetched while the form opened: this test no longer holds it"
    assert page.locator('[data-testid="stNumberInputField"]').count() == 0
    pick(page, "Risks", "Evasion")
    for route in held:
        route.fallback()  # to the loopback guard, which lets it through
    page.context.unroute(NUMBER_INPUT_CODE)
    expect(page.get_by_role("spinbutton", name="Training rows", exact=True)).to_be_visible()
    wait_idle(page)


def _assert_form_starts_right(page: Page, screenshot: str) -> None:
    """The training fields show their defaults, the server got the same (no error after one more run), and
    Launch is enabled."""
    page.get_by_text("Training", exact=True).first.click()
    for label, shown in TRAINING_DEFAULTS.items():
        expect(page.get_by_role("spinbutton", name=label, exact=True)).to_have_value(shown)
    seeds = page.get_by_role("textbox", name="Seeds", exact=True)
    seeds.fill("0")
    seeds.press("Enter")  # a run with every field's browser-side value
    wait_idle(page)
    page.screenshot(path=ARTIFACTS / screenshot, full_page=True)
    for label, shown in TRAINING_DEFAULTS.items():
        expect(page.get_by_role("spinbutton", name=label, exact=True)).to_have_value(shown)
    expect(page.get_by_text("parameter must be")).to_have_count(0)
    expect(page.get_by_role("button", name="Launch assessment")).to_be_enabled()
    preview = page.locator('[data-testid="stExpander"]').filter(has_text="Spec preview")
    preview.locator("summary").click()
    expect(preview).to_contain_text("lr: 0.001")
    expect(preview).to_contain_text("epochs: 10")
    expect(preview).to_contain_text("batch_size: 256")


def test_numbers_drawn_late_start_at_the_forms_values(api: Service, dashboard_server: str) -> None:
    """In a first browser context, after a reload of it, and in a second context on the same server."""
    with chromium() as (_, new_context):
        first = new_context().new_page()
        connect(first, api, dashboard_server)
        _draw_numbers_late(first, lambda: go(first, "New assessment"))
        _assert_form_starts_right(first, "form-late-numbers-1.png")

        # A reload starts a new Streamlit session on the same page (the URL keeps the sign-in handle).
        _draw_numbers_late(first, first.reload)
        _assert_form_starts_right(first, "form-late-numbers-2-reload.png")

        second = new_context().new_page()
        connect(second, api, dashboard_server)
        _draw_numbers_late(second, lambda: go(second, "New assessment"))
        _assert_form_starts_right(second, "form-late-numbers-3-second-context.png")
