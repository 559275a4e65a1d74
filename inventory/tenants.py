"""Tenant records: create, change, delete, and usage against quotas.

A deleted tenant stays as a tombstone (state `deleted`): its id is never given to another
tenant, so nothing recorded under it (events, audit entries, idempotency keys) passes to a
newcomer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events
from inventory.errors import InventoryError
from inventory.models import Cluster, Network, Node, SshKey, Tenant


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
        earlier = await session.scalar(select(Tenant.state).where(Tenant.id == tenant.id))
        if earlier == "deleted":
            raise TenantConflict(
                f"tenant id {tenant.id!r} belonged to a deleted tenant; ids are never reused"
            ) from exc
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
    if tenant is None or tenant.state == "deleted":
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
    query = select(Tenant).where(Tenant.state != "deleted").order_by(Tenant.id).limit(limit)
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
    """Delete a tenant that holds no node, network or cluster: its SSH keys go, its record
    stays as a tombstone."""
    tenant = await session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None or tenant.state == "deleted":
        raise TenantNotFound(tenant_id)
    held = [
        what
        for what, model in (("nodes", Node), ("networks", Network), ("clusters", Cluster))
        if await session.scalar(select(func.count()).where(model.tenant_id == tenant_id))
    ]
    if held:
        raise TenantConflict(
            f"tenant {tenant_id!r} still holds {' and '.join(held)}; release or delete them first"
        )
    await session.execute(delete(SshKey).where(SshKey.tenant_id == tenant_id))
    events.record(
        session, kind="tenant", resource_id=tenant_id, tenant_id=tenant_id,
        from_state=tenant.state, to_state="deleted", reason="deleted",
    )  # fmt: skip
    tenant.state, tenant.deleted_at = "deleted", datetime.now(UTC)
