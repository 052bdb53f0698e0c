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
from backend.core.storage import ArtifactStore
from backend.models import ApiToken

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_PAGE_OFFSET",
    "AdminToken",
    "CurrentToken",
    "LimitQuery",
    "OffsetQuery",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "get_db",
    "get_settings_dep",
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


def get_current_token(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiToken:
    """The caller's live token (401 without one, or with an unknown or revoked one)."""
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


CurrentToken = Annotated[ApiToken, Depends(get_current_token)]


def get_admin_token(token: CurrentToken) -> ApiToken:
    """The caller's token, which must be an admin token (403 otherwise)."""
    if not token.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "This operation needs an admin token.")
    return token


AdminToken = Annotated[ApiToken, Depends(get_admin_token)]
