"""Entry point of the Amulet dashboard: ``streamlit run dashboard/app.py``.

A multipage app (``st.navigation``); each page lives in ``dashboard/views/`` and talks to the REST API
only through :mod:`dashboard.client`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository: make `import dashboard` work
# from a source checkout too.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard.state import TOKEN_KEY, URL_KEY, restore_sign_in  # noqa: E402

# A local favicon: a material-icon favicon would be fetched from a font CDN by the browser.
st.set_page_config(page_title="Amulet", page_icon=str(Path(__file__).with_name("assets") / "icon.png"), layout="wide")

PAGES = {
    "Setup": [
        st.Page("views/connect.py", title="Connect", icon=":material/link:", default=True),
        st.Page("views/data.py", title="Models & data", icon=":material/database:", url_path="data"),
    ],
    "Assess": [
        st.Page("views/new_assessment.py", title="New assessment", icon=":material/add_circle:", url_path="new"),
        st.Page("views/run.py", title="Run", icon=":material/progress_activity:", url_path="run"),
    ],
    "Review": [
        st.Page("views/results.py", title="Results", icon=":material/grid_on:", url_path="results"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page("views/history.py", title="History", icon=":material/history:", url_path="history"),
    ],
}

page = st.navigation(PAGES)
restore_sign_in()  # a reloaded page reconnects from the handle in its URL
page.run()
restore_sign_in()  # and the URL keeps the handle after a page switch
with st.sidebar:  # after the page, so a connection made on this run already shows
    if st.session_state.get(URL_KEY):
        token = st.session_state.get(TOKEN_KEY) or ""
        st.caption(f"Connected to {st.session_state[URL_KEY]}" + (f" · token {token[:6]}…" if token else ""))
    else:
        st.caption("Not connected")
