"""Shared per-request dependencies: an inventory session and the Temporal client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        request.state.db_session = session  # the audit writes through it (api/auth.py)
        yield session


def temporal_client(request: Request) -> Client:
    return request.app.state.temporal


Db = Annotated[AsyncSession, Depends(db_session)]
Temporal = Annotated[Client, Depends(temporal_client)]
