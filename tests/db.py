"""An inventory schema of its own for a test module: migrated, with a session factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inventory.db import create_engine, session_factory
from inventory.migrate import upgrade_async


@asynccontextmanager
async def migrated_sessions(
    postgres_url: str, schema: str, **engine_options: Any
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade_async(postgres_url, schema)
    engine = create_engine(postgres_url, schema=schema, **engine_options)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
