"""Alembic environment: runs the inventory migrations over asyncpg in the configured schema."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from inventory.db import create_engine
from inventory.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection, schema: str) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    connection.execute(text(f'SET search_path TO "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.attributes["url"]
    schema = config.attributes.get("schema", "public")
    engine = create_engine(url, schema=schema, pool_size=1)
    async with engine.begin() as connection:
        await connection.run_sync(_run, schema)
    await engine.dispose()


asyncio.run(_main())
