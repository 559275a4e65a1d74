"""Transaction-level advisory locks, named.

PostgreSQL's advisory locks are per database, not per schema: the key hashes the schema
with the name, so deployments (and test platforms) sharing a database never queue on, or
deadlock with, each other's locks.
"""

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession


async def hold(session: AsyncSession, name: str) -> None:
    """Take the lock `name` until the session's transaction ends."""
    schema = func.coalesce(func.current_schema(), literal(""))
    key = func.hashtext(schema.concat(literal(f":{name}")))
    await session.execute(select(func.pg_advisory_xact_lock(key)))
