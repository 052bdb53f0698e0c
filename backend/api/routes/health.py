"""``GET /health``: is the database reachable, is the broker reachable (no token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

import amulet
from backend.api.deps import SessionDep, SettingsDep
from backend.core.queue import broker_reachable
from backend.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic)
def health(session: SessionDep, settings: SettingsDep, response: Response) -> HealthPublic:
    """Check the database (``SELECT 1``) and the broker (a connection); 503 when either is down."""
    try:
        session.execute(text("SELECT 1"))
        database = {"ok": True, "backend": session.get_bind().dialect.name}
    except Exception as exc:  # any failure is reported as unreachable
        database = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ok, reason = broker_reachable(settings)
    broker = {"ok": ok, "transport": settings.resolved_broker_url.split(":", 1)[0]}
    if reason:
        broker["error"] = reason
    healthy = database["ok"] and ok
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthPublic(
        status="ok" if healthy else "degraded", database=database, broker=broker, version=amulet.__version__
    )
