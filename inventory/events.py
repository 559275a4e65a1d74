"""The event log: every state change of every resource kind, in one table.

Writers call `record` inside the transaction that makes the change, so an event exists exactly
when its change committed. A trigger then announces the row on `channel(schema)` (NOTIFY is
delivered at commit, in commit order); readers that were away catch up with `after`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import Event


def channel(schema: str) -> str:
    """The NOTIFY channel of the event table in `schema` (named by the trigger of 0005)."""
    return f"{schema}.events"


def record(
    session: AsyncSession,
    *,
    kind: str,
    resource_id: str,
    to_state: str,
    from_state: str | None = None,
    tenant_id: str | None = None,
    owner: str | None = None,
    workflow_id: str | None = None,
    reason: str | None = None,
) -> None:
    """`tenant_id` and `owner`: whose resource it is, so streams show it exactly to those who
    may GET it."""
    session.add(
        Event(
            kind=kind,
            resource_id=resource_id,
            tenant_id=tenant_id,
            owner=owner,
            from_state=from_state,
            to_state=to_state,
            workflow_id=workflow_id,
            reason=reason,
        )
    )


async def after(
    session: AsyncSession, event_id: int, *, kinds: Sequence[str] = (), limit: int = 1000
) -> Sequence[Event]:
    """Events newer than `event_id`, oldest first."""
    query = select(Event).where(Event.id > event_id).order_by(Event.id).limit(limit)
    if kinds:
        query = query.where(Event.kind.in_(kinds))
    return (await session.scalars(query)).all()


async def newest_id(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)
