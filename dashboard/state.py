"""Session state shared by the dashboard's pages: the API connection and cached catalog.

The API URL and token are remembered for the browser session (``st.session_state``), never written to
disk. Pages call :func:`require_client`, which stops the page with a pointer to the Connect page when
there is no working connection yet.

Sign-in survives a page reload: a reload starts a new Streamlit session, so :func:`connect` also files the
connection in this dashboard process under a random handle that the page's URL carries (``?s=...``), and
:func:`restore_sign_in` picks it up again. The token itself never appears in the URL; a handle works only
against this dashboard process (a restart forgets every handle), expires after
:data:`SIGN_IN_TTL_SECONDS` without use, and is dropped by Disconnect.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import streamlit as st

from amulet.settings import get_settings
from dashboard.client import ApiClient, ApiError

__all__ = [
    "CONNECT_PAGE",
    "connect",
    "disconnect",
    "get_catalog",
    "get_client",
    "remember_assessment",
    "require_client",
    "restore_sign_in",
    "show_api_error",
]

#: Path of the Connect page (relative to ``dashboard/app.py``), for ``st.page_link``/``st.switch_page``.
CONNECT_PAGE = "views/connect.py"

URL_KEY = "amulet_api_url"
TOKEN_KEY = "amulet_api_token"
CATALOG_KEY = "amulet_catalog"
CURRENT_KEY = "amulet_current_assessment"
HANDLE_KEY = "amulet_sign_in_handle"
#: The URL query parameter that carries the sign-in handle.
HANDLE_PARAM = "s"
#: A sign-in handle unused for this long is forgotten (the user connects again).
SIGN_IN_TTL_SECONDS = 12 * 3600


class _SignIns:
    """Connections filed under random handles, shared by every session of this dashboard process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[str, str, float]] = {}

    def add(self, url: str, token: str) -> str:
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._items[handle] = (url, token, time.monotonic())
        return handle

    def get(self, handle: str) -> tuple[str, str] | None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (_, _, seen) in self._items.items() if now - seen > SIGN_IN_TTL_SECONDS]:
                del self._items[key]
            item = self._items.get(handle)
            if item is None:
                return None
            self._items[handle] = (item[0], item[1], now)
            return item[0], item[1]

    def drop(self, handle: str) -> None:
        with self._lock:
            self._items.pop(handle, None)


@st.cache_resource(show_spinner=False)
def _sign_ins() -> _SignIns:
    return _SignIns()


def restore_sign_in() -> None:
    """Reconnect a reloaded page from the handle in its URL, and keep the handle in the URL while connected."""
    handle = st.query_params.get(HANDLE_PARAM)
    if not st.session_state.get(URL_KEY) and handle:
        found = _sign_ins().get(str(handle))
        if found is not None:
            st.session_state[URL_KEY], st.session_state[TOKEN_KEY] = found
            st.session_state[HANDLE_KEY] = str(handle)
    current = st.session_state.get(HANDLE_KEY)
    if st.session_state.get(URL_KEY) and current and st.query_params.get(HANDLE_PARAM) != current:
        st.query_params[HANDLE_PARAM] = current  # a page switch clears the URL's parameters


def default_api_url() -> str:
    """The API URL from Amulet's settings (``AMULET_API_URL``), the Connect page's initial value."""
    try:
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
    old = st.session_state.get(HANDLE_KEY)
    if old:
        _sign_ins().drop(str(old))
    handle = _sign_ins().add(client.base_url, client.token or "")
    st.session_state[HANDLE_KEY] = handle
    st.query_params[HANDLE_PARAM] = handle
    return health


def disconnect() -> None:
    """Forget the URL, the token, the sign-in handle and everything fetched with them."""
    handle = st.session_state.get(HANDLE_KEY)
    if handle:
        _sign_ins().drop(str(handle))
    st.query_params.pop(HANDLE_PARAM, None)
    for key in (URL_KEY, TOKEN_KEY, CATALOG_KEY, CURRENT_KEY, HANDLE_KEY):
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
