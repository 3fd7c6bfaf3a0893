from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Open to all: the gateway is up (its tables exist before it listens)."""
    return {"status": "ok"}
