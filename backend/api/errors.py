"""Error answers that never show server paths.

Messages from the engine and from libraries (torch, pyarrow, safetensors) often quote the file they failed
on, which for an upload is an absolute path inside the artifact store. Every ``HTTPException`` detail is
scrubbed before it is sent: a path under the service's home, artifact, dataset or temporary directory, or
under the Python installation, is replaced by its file name.
"""

from __future__ import annotations

import math
import re
import site
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path, PurePath
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.core.config import Settings

__all__ = [
    "database_value_error_handler",
    "json_safe",
    "scrub_server_paths",
    "server_path_roots",
    "scrubbing_http_exception_handler",
    "validation_exception_handler",
]

# A path continues up to whitespace, a quote, a bracket or a comma/semicolon (what ends it in a sentence).
_PATH_TAIL = r"[^\s'\"()\[\]{}<>,;]*"


def server_path_roots(settings: Settings) -> list[str]:
    """The directories whose paths must not appear in an answer (longest first, resolved and as configured):
    the artifact store, the home and dataset directories, the temporary directory (spooled uploads) and the
    Python installation (library messages quote their own files)."""
    directories = [settings.resolved_artifact_dir, settings.home, settings.resolved_data_dir]
    directories += [Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.exec_prefix)]
    directories += [Path(p) for p in site.getsitepackages() if p]
    roots: set[str] = set()
    for directory in directories:
        roots.add(str(directory))
        roots.add(str(directory.resolve()))
    return sorted((r for r in roots if len(r) > 1), key=len, reverse=True)


def scrub_server_paths(value: Any, roots: Sequence[str]) -> Any:
    """``value`` (a string, or dicts and lists of them) with every path under ``roots`` cut to its file name."""
    if isinstance(value, str):
        for root in roots:
            pattern = re.escape(root.rstrip("/")) + r"(?:/" + _PATH_TAIL + r")?"
            value = re.sub(pattern, lambda m: PurePath(m.group(0)).name or "<server path>", value)
        return value
    if isinstance(value, dict):
        return {k: scrub_server_paths(v, roots) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_server_paths(v, roots) for v in value]
    return value


def scrubbing_http_exception_handler(settings: Settings) -> Callable[[Request, Exception], Awaitable[Response]]:
    """FastAPI's HTTPException handler, with the detail scrubbed of server paths first."""
    roots = server_path_roots(settings)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        exc.detail = scrub_server_paths(exc.detail, roots)
        return await http_exception_handler(request, exc)

    return handler


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as a string (``"NaN"``, ``"Infinity"``, ``"-Infinity"``).

    Python's JSON parser reads ``NaN``, ``Infinity`` and ``1e400`` in a request body, but no JSON answer may
    hold them: an answer that quotes such an input back would fail to serialise (a 500 instead of the 422).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def validation_exception_handler(settings: Settings) -> Callable[[Request, Exception], Awaitable[Response]]:
    """FastAPI's 422 for a malformed request (the list of problems, each quoting its input), with the inputs
    made JSON-safe (:func:`json_safe`) and scrubbed of server paths."""
    roots = server_path_roots(settings)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = scrub_server_paths(json_safe(jsonable_encoder(exc.errors())), roots)
        return JSONResponse(status_code=422, content={"detail": detail})

    return handler


def database_value_error_handler(settings: Settings) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A 422 for a request value the database refuses to store or compare (``sqlalchemy.exc.DataError``).

    The safety net under the routes' own validation: PostgreSQL refuses a text holding a NUL character
    (``\\u0000`` in JSON, ``%00`` in a URL) in any column or query, and a value longer than its column,
    where SQLite stores both. The answer says which and how to fix it, never the SQL.
    """
    roots = server_path_roots(settings)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DataError)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        if "NUL" in reason or "0x00" in reason:
            message = (
                "A text value of the request (in the URL, a query parameter or the body) contains a NUL "
                "character (\\u0000 or %00), which the database cannot store. Remove it."
            )
        else:
            message = (
                f"A value of the request cannot be stored by the database ({reason}). Send a shorter or smaller value."
            )
        detail = {"field": "request", "message": scrub_server_paths(message, roots)}
        return JSONResponse(status_code=422, content={"detail": detail})

    return handler


#: Seconds a client is asked to wait (``Retry-After``) when every database connection is busy.
BUSY_RETRY_AFTER = 2


async def database_busy_handler(request: Request, exc: Exception) -> Response:
    """A 503 with ``Retry-After`` when no database connection freed up in time (SQLAlchemy's pool timeout).

    Many clients polling at once can hold every pooled connection; the request was not wrong and nothing was
    changed, so the answer says to retry instead of a bare 500.
    """
    return JSONResponse(
        status_code=503,
        content={
            "detail": {
                "field": "request",
                "message": "The service is busy (every database connection is in use); nothing was changed. "
                f"Retry in {BUSY_RETRY_AFTER} seconds, or poll less often (GET /assessments/{{id}}/status "
                "answers 304 while nothing changed).",
            }
        },
        headers={"Retry-After": str(BUSY_RETRY_AFTER)},
    )
