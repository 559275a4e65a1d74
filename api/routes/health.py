"""Liveness: the process answers and its inventory database does."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from ..deps import Db

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health of the API and its database")
async def healthz(db: Db) -> dict[str, str]:
    await db.execute(text("SELECT 1"))
    return {"status": "ok"}
