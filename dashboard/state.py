"""Session state shared by the dashboard's pages: the API connection and cached catalog.

The API URL and token are remembered for the browser session (``st.session_state``), never written to
disk. Pages call :func:`require_client`, which stops the page with a pointer to the Connect page when
there is no working connection yet.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.client import ApiClient, ApiError

__all__ = [
    "CONNECT_PAGE",
    "connect",
    "disconnect",
    "get_catalog",
    "get_client",
    "remember_assessment",
    "require_client",
    "show_api_error",
]

#: Path of the Connect page (relative to ``dashboard/app.py``), for ``st.page_link``/``st.switch_page``.
CONNECT_PAGE = "views/connect.py"

URL_KEY = "amulet_api_url"
TOKEN_KEY = "amulet_api_token"
CATALOG_KEY = "amulet_catalog"
CURRENT_KEY = "amulet_current_assessment"


def default_api_url() -> str:
    """The API URL from Amulet's settings (``AMULET_API_URL``), the Connect page's initial value."""
    try:
        from amulet.settings import get_settings

        return get_settings().api_url
    except Exception:  # settings invalid in this environment: fall back to the documented default
        return "http://127.0.0.1:8000"


def get_client() -> ApiClient | None:
    """The client of the connected API, or ``None`` before the user connected."""
    url = st.session_state.get(URL_KEY)
    if not url:
        return None
    return ApiClient(url, st.session_state.get(TOKEN_KEY) or None)


def connect(url: str, token: str) -> dict[str, Any]:
    """Check the API at ``url`` answers and accepts ``token``; remember both on success.

    Returns:
        The API's ``/health`` answer.

    Raises:
        ApiError: when the API is unreachable (``unreachable``) or rejects the token (``unauthorized``).
    """
    client = ApiClient(url.strip(), token.strip() or None)
    health = client.health()
    client.check_token()
    st.session_state[URL_KEY] = client.base_url
    st.session_state[TOKEN_KEY] = client.token or ""
    st.session_state.pop(CATALOG_KEY, None)
    return health


def disconnect() -> None:
    """Forget the URL, the token and everything fetched with them."""
    for key in (URL_KEY, TOKEN_KEY, CATALOG_KEY, CURRENT_KEY):
        st.session_state.pop(key, None)


def require_client() -> ApiClient:
    """The connected client; otherwise explain how to connect and stop the page."""
    client = get_client()
    if client is None:
        st.info("Connect to an Amulet API first.")
        st.page_link(CONNECT_PAGE, label="Go to Connect", icon=":material/link:")
        st.stop()
    return client  # type: ignore[return-value]


def get_catalog(client: ApiClient) -> dict[str, Any]:
    """The API's catalog, fetched once per session."""
    cached = st.session_state.get(CATALOG_KEY)
    if cached is None:
        cached = client.catalog()
        st.session_state[CATALOG_KEY] = cached
    return dict(cached)


def remember_assessment(assessment_id: str) -> None:
    """Make ``assessment_id`` the one the Run and Results pages open by default."""
    st.session_state[CURRENT_KEY] = assessment_id


def current_assessment() -> str | None:
    """The assessment the user launched or opened last."""
    return st.session_state.get(CURRENT_KEY)


def show_api_error(exc: ApiError, *, where: Any = None) -> None:
    """Show an API error; for an unreachable API or a rejected token, point at the Connect page."""
    area = where if where is not None else st
    area.error(exc.message)
    if exc.unreachable or exc.unauthorized:
        st.page_link(CONNECT_PAGE, label="Check the connection", icon=":material/link:")
