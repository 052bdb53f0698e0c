"""Connect page: API URL + token, remembered for the browser session."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.state import TOKEN_KEY, URL_KEY, connect, default_api_url, disconnect

st.title("Connect to Amulet")
st.write(
    "Amulet measures how ML defenses change a model's exposure to security, privacy and fairness risks. "
    "Connect to the Amulet API to upload data, run assessments and read their results."
)

if "connect.url" not in st.session_state:
    st.session_state["connect.url"] = st.session_state.get(URL_KEY) or default_api_url()
if "connect.token" not in st.session_state:
    st.session_state["connect.token"] = st.session_state.get(TOKEN_KEY, "")

if not st.session_state.get(URL_KEY):
    with st.expander("Where do I get a token?", icon=":material/key:", expanded=True):
        st.markdown(
            "- **Your own machine** (`make run` or `amulet serve --demo`): the terminal prints the API URL and a "
            "token when the service starts; paste both below.\n"
            "- **A shared server**: ask its administrator for a token of your project. An administrator creates "
            "one with `POST /projects` (a new project and its first token) or `POST /tokens` (with a `manage` "
            "token), as docs/ci-integration.md shows.\n"
            "- The token stays in this browser tab; a reload keeps you signed in, *Disconnect* forgets it."
        )

with st.form("connect"):
    url = st.text_input("API URL", key="connect.url", help="Where the Amulet REST API listens.")
    token = st.text_input(
        "API token",
        key="connect.token",
        type="password",
        help="Printed once by `amulet serve` on first start, or created with POST /tokens.",
    )
    submitted = st.form_submit_button("Connect", type="primary")

if submitted:
    try:
        health = connect(url, token)
    except ApiError as exc:
        if exc.unreachable or exc.unauthorized:
            st.error(exc.message)
        else:
            st.error(f"The API answered with an error: {exc.message}")
    else:
        st.success(f"Connected to {url.strip()} (status: {health.get('status', 'ok')}).")
        if isinstance(health, dict) and health:
            with st.expander("Service health"):
                st.json(health)

if st.session_state.get(URL_KEY):
    st.divider()
    cols = st.columns([3, 1])
    cols[0].write(f"Connected to **{st.session_state[URL_KEY]}**. Next: pick a dataset and a model.")
    cols[0].page_link("views/data.py", label="Models & data", icon=":material/database:")
    cols[0].page_link("views/new_assessment.py", label="New assessment", icon=":material/add_circle:")
    if cols[1].button("Disconnect", key="connect.disconnect"):
        disconnect()
        st.rerun()
