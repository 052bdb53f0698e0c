"""The API router: every resource router, mounted at the root."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.routes import assessments, catalog, datasets, health, models, tokens

api_router = APIRouter()
for _module in (health, catalog, tokens, models, datasets, assessments):
    api_router.include_router(_module.router)

__all__ = ["api_router"]
