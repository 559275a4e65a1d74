"""The audit log: one row per authorization decision, newest last."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import AuditEntry


async def record(
    session: AsyncSession,
    *,
    subject: str,
    tenant: str | None,
    roles: Sequence[str],
    action: str,
    resource_kind: str,
    resource_id: str | None,
    allowed: bool,
    reason: str,
    request_id: str | None,
    client_request_id: str | None = None,
) -> None:
    await session.execute(
        insert(AuditEntry).values(
            subject=subject,
            tenant=tenant,
            roles=sorted(roles),
            action=action,
            resource_kind=resource_kind,
            resource_id=resource_id,
            allowed=allowed,
            reason=reason,
            request_id=request_id,
            client_request_id=client_request_id,
        )
    )


async def entries(
    session: AsyncSession, *, after: int | None = None, limit: int = 100
) -> Sequence[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id).limit(limit)
    if after is not None:
        query = query.where(AuditEntry.id > after)
    return (await session.scalars(query)).all()
