"""Each widget's declared default follows the value the server holds for it, on every run.

Why: the New-assessment form pre-sets its values through ``st.session_state`` (schema defaults, templates,
uploaded specs, the draft restored after a page switch). Streamlit hands such a value to the browser once, as a
one-shot ``set_value`` in the message of the run that set it; every later run's message of that widget carries
only the default declared in the call (``value``/``index``/``default``: a number's ``min_value`` or 0, a select
box's first option, an empty multiselect). A browser that draws the widget only after a later run replaced the
one-shot message (a busy machine, a collapsed expander drawn late, a user who acts before the page finished
drawing) starts the widget at that declared default and sends it back on the next run. That is how the training
learning rate came back as 0.0 (and, unnoticed because they are valid, epochs and batch size as 1 and momentum as
0): ``tests/dashboard/test_form_browser.py`` reproduces it by holding back the number input's code in Chromium
until a second run has replaced the first.

Declaring the value the server holds as the widget's default on every run makes a late start harmless. The
functions here read that value; the form passes it to the widget call. On a run where the form itself just
wrote the value, Streamlit would log that the widget got a value both ways; the dashboard's Streamlit config
turns that log line off, since here it is on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

__all__ = ["held", "held_index", "held_selection"]


def held(key: str, fallback: Any = None) -> Any:
    """The value the server holds for the widget ``key`` (what this run's widget call will return), else
    ``fallback`` when the session has none yet."""
    return st.session_state.get(key, fallback)


def held_index(options: Sequence[Any], key: str, fallback: int = 0) -> int:
    """The position in ``options`` of the value held for the select box or radio ``key`` (``fallback`` when it
    holds none, or one that is not an option)."""
    current = held(key)
    for i, option in enumerate(options):
        if option == current:
            return i
    return fallback


def held_selection(options: Sequence[Any], key: str, fallback: Sequence[Any] = ()) -> list[Any]:
    """The values held for the multiselect ``key`` that are among ``options`` (a default naming anything else
    is an error in Streamlit)."""
    current = held(key, list(fallback))
    return [v for v in (current or []) if v in options]
