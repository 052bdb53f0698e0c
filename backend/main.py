"""The FastAPI application: ``uvicorn backend.main:app`` (or ``amulet serve``).

On start it applies the Alembic migrations and creates the first project and its admin token (logged
once when generated). Routes live in ``backend/api``; nothing here queries the database directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

import amulet
from backend.api.errors import (
    database_busy_handler,
    database_value_error_handler,
    scrubbing_http_exception_handler,
    validation_exception_handler,
)
from backend.api.main import api_router
from backend.core.config import Settings, get_settings
from backend.core.db import prestart
from backend.core.limits import BodySizeLimitMiddleware

__all__ = ["app", "create_app", "prestart"]

logger = logging.getLogger("amulet.api")


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the app for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            token = prestart(settings)
            if token:
                logger.warning("Created the admin API token (shown once, store it now): %s", token)
        yield

    app = FastAPI(
        title="Amulet",
        version=amulet.__version__,
        description="Measure how ML defenses interact with security, privacy and fairness risks.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(api_router)
    # Library messages quote the file they failed on; no answer shows a path inside the artifact store.
    app.add_exception_handler(StarletteHTTPException, scrubbing_http_exception_handler(settings))
    app.add_exception_handler(RequestValidationError, validation_exception_handler(settings))
    app.add_exception_handler(DataError, database_value_error_handler(settings))
    app.add_exception_handler(PoolTimeoutError, database_busy_handler)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    return app


app = create_app()
