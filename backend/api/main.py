"""The API router: every resource router, mounted at the root."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import assessments, catalog, datasets, health, models, signing, tokens
from backend.schemas import ErrorResponse

#: Every route documents its 422 as :class:`ErrorResponse` (a refused upload or spec answers
#: ``{"detail": {"field", "message"}}``, not FastAPI's list of validation errors alone).
api_router = APIRouter(
    responses={422: {"model": ErrorResponse, "description": "The request, an upload or a spec is invalid."}}
)
for _module in (health, catalog, tokens, models, datasets, assessments, signing):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
