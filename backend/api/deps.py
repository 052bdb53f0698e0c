"""Request dependencies: settings, one database session per request, the caller's token and project."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from backend import crud
from backend.core.config import Settings
from backend.core.db import get_sessionmaker
from backend.core.security import scope_allows
from backend.core.storage import ArtifactStore
from backend.models import ApiToken

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_PAGE_OFFSET",
    "AdminToken",
    "AnyScopeToken",
    "CurrentToken",
    "LimitQuery",
    "ManageToken",
    "OffsetQuery",
    "READ_METHODS",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "authenticate",
    "get_db",
    "get_settings_dep",
    "scope_error",
]

#: The most rows one page of a list endpoint returns.
MAX_PAGE_SIZE = 500
#: The largest accepted ``offset`` (far past any real list; keeps the value inside every database's integer range).
MAX_PAGE_OFFSET = 1_000_000_000

LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Rows per page, 1 to {MAX_PAGE_SIZE}.")]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description=f"Rows to skip, 0 to {MAX_PAGE_OFFSET}.")]

_bearer = HTTPBearer(auto_error=False, description="An Amulet API token: `Authorization: Bearer amt_...`.")


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    """One session per request, closed afterwards (routes commit their own writes)."""
    session = get_sessionmaker(settings)()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db)]


def get_store(settings: SettingsDep) -> ArtifactStore:
    """The artifact store of the app's settings."""
    return ArtifactStore.from_settings(settings)


StoreDep = Annotated[ArtifactStore, Depends(get_store)]


#: Methods a ``read`` token may use; every other method (uploads, submits, cancels, deletes) needs ``submit``.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def scope_error(token: ApiToken, needed: str, what: str) -> HTTPException:
    """The 403 answer for a token whose scope is below ``needed``: names both scopes and the way out."""
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"{what} needs a token with the '{needed}' scope; this token has the '{token.effective_scope}' scope. "
        f"Use a token with the '{needed}' scope (a 'manage' token or the admin token mints one: "
        f"POST /tokens with scope '{needed}').",
    )


def authenticate(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiToken:
    """The caller's live token, whatever its scope (401 without one, or with an unknown or revoked one)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "An API token is required: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = crud.get_token(session, plaintext=credentials.credentials)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "The API token is unknown or revoked.", headers={"WWW-Authenticate": "Bearer"}
        )
    return token


AnyScopeToken = Annotated[ApiToken, Depends(authenticate)]


def get_current_token(request: Request, token: AnyScopeToken) -> ApiToken:
    """The caller's live token, with the scope the request's method needs (403 naming it otherwise).

    A GET, HEAD or OPTIONS request needs ``read`` (every token has it); any other request (an upload, a
    submit, a cancel, a delete) needs ``submit``. Routes that need more (``/tokens``, ``/projects``) use
    :data:`ManageToken` or :data:`AdminToken` instead.
    """
    if request.method not in READ_METHODS and not scope_allows(token.effective_scope, "submit"):
        raise scope_error(token, "submit", f"{request.method} {request.url.path}")
    return token


CurrentToken = Annotated[ApiToken, Depends(get_current_token)]


def get_manage_token(token: AnyScopeToken) -> ApiToken:
    """The caller's token, which must hold the ``manage`` scope (403 naming it otherwise)."""
    if not scope_allows(token.effective_scope, "manage"):
        raise scope_error(token, "manage", "Minting, listing and revoking tokens")
    return token


ManageToken = Annotated[ApiToken, Depends(get_manage_token)]


def get_admin_token(token: AnyScopeToken) -> ApiToken:
    """The caller's token, which must be an admin token (403 otherwise)."""
    if not token.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "This operation needs the admin token (the AMULET_ADMIN_TOKEN setting, or the one printed on first "
            "start); no project token can do it, whatever its scope.",
        )
    return token


AdminToken = Annotated[ApiToken, Depends(get_admin_token)]
