"""Tenant records: create, change, delete, and usage against quotas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events
from inventory.errors import InventoryError
from inventory.models import Node, Tenant


class TenantNotFound(InventoryError):
    pass


class TenantConflict(InventoryError):
    pass


@dataclass(frozen=True)
class Usage:
    nodes: int
    gpus: int


async def create(session: AsyncSession, tenant: Tenant) -> Tenant:
    try:
        async with session.begin_nested():
            session.add(tenant)
            await session.flush()
    except IntegrityError as exc:
        raise TenantConflict(f"tenant {tenant.id!r} exists") from exc
    events.record(
        session, kind="tenant", resource_id=tenant.id, tenant_id=tenant.id,
        to_state=tenant.state, reason="created",
    )  # fmt: skip
    return tenant


def change_state(session: AsyncSession, tenant: Tenant, state: str) -> None:
    """Suspend or resume: recorded as an event when it changes anything."""
    if tenant.state == state:
        return
    events.record(
        session, kind="tenant", resource_id=tenant.id, tenant_id=tenant.id,
        from_state=tenant.state, to_state=state,
    )  # fmt: skip
    tenant.state = state


async def get(session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound(tenant_id)
    return tenant


async def is_active(session: AsyncSession, tenant_id: str) -> bool:
    """Whether the tenant exists and is not suspended."""
    return await session.scalar(select(Tenant.state).where(Tenant.id == tenant_id)) == "active"


async def listing(
    session: AsyncSession,
    *,
    only: str | None,
    after: str | None,
    limit: int,
    state: str | None = None,
) -> Sequence[Tenant]:
    query = select(Tenant).order_by(Tenant.id).limit(limit)
    if state is not None:
        query = query.where(Tenant.state == state)
    if only is not None:
        query = query.where(Tenant.id == only)
    if after is not None:
        query = query.where(Tenant.id > after)
    return (await session.scalars(query)).all()


async def usage(session: AsyncSession, tenant_id: str) -> Usage:
    row = (
        await session.execute(
            select(func.count(Node.id), func.coalesce(func.sum(Node.gpu_count), 0)).where(
                Node.tenant_id == tenant_id
            )
        )
    ).one()
    return Usage(nodes=int(row[0]), gpus=int(row[1]))


async def remove(session: AsyncSession, tenant_id: str) -> None:
    try:
        async with session.begin_nested():
            deleted = await session.execute(delete(Tenant).where(Tenant.id == tenant_id))
    except IntegrityError as exc:
        raise TenantConflict(
            f"tenant {tenant_id!r} still holds nodes, networks or clusters;"
            " release or delete them first"
        ) from exc
    if deleted.rowcount == 0:  # type: ignore[attr-defined]
        raise TenantNotFound(tenant_id)
    events.record(
        session, kind="tenant", resource_id=tenant_id, tenant_id=tenant_id,
        to_state="deleted", reason="deleted",
    )  # fmt: skip
