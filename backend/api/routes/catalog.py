"""``GET /catalog``: risks, attacks, defenses and metrics with their parameter schemas, from the registry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter

from amulet import registry

router = APIRouter(tags=["catalog"])


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Any]:
    return registry.catalog()


@router.get("/catalog")
def catalog() -> dict[str, Any]:
    """What the engine can assess (no token needed: it is the same for every project)."""
    return _catalog()
