"""Advisory locks on a real PostgreSQL: one name queues within a schema and never across
schemas sharing the database (as test platforms, or two deployments, do)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from inventory import locks
from inventory.db import create_engine, session_factory


async def _holds_within(url: str, schema: str, name: str, seconds: float) -> bool:
    """Whether `name` could be taken in `schema` within `seconds`."""
    engine = create_engine(url, schema=schema, pool_size=1)
    try:
        async with session_factory(engine).begin() as session:
            await asyncio.wait_for(locks.hold(session, name), seconds)
            return True
    except TimeoutError:
        return False
    finally:
        await engine.dispose()


async def test_a_lock_queues_in_its_schema_and_not_in_another(postgres_url: str) -> None:
    admin = create_engine(postgres_url, pool_size=1)
    async with admin.begin() as connection:
        for schema in ("t_locks_a", "t_locks_b"):
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    await admin.dispose()
    engine = create_engine(postgres_url, schema="t_locks_a", pool_size=1)
    try:
        async with session_factory(engine).begin() as holder:
            await locks.hold(holder, "pool:vlan:fabric")
            assert await _holds_within(postgres_url, "t_locks_b", "pool:vlan:fabric", 5)
            assert not await _holds_within(postgres_url, "t_locks_a", "pool:vlan:fabric", 1)
            assert await _holds_within(postgres_url, "t_locks_a", "pool:vni:fabric", 5)
        assert await _holds_within(postgres_url, "t_locks_a", "pool:vlan:fabric", 5)
    finally:
        await engine.dispose()
