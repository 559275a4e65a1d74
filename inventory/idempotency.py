"""Idempotency keys: the first request with a key claims it; repeats replay its response.

A key belongs to one tenant and subject: a subject holding tokens of two tenants cannot replay
one tenant's answer under the other's token. Platform principals' tenant is ''."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import IdempotentRequest

KEY_LIFETIME = timedelta(hours=24)


async def claim(
    session: AsyncSession,
    *,
    tenant: str,
    subject: str,
    key: str,
    method_path: str,
    body_sha256: str,
) -> IdempotentRequest | None:
    """Claim the key for this request: None if claimed now, else the earlier request's row."""
    await session.execute(
        delete(IdempotentRequest).where(
            _this(tenant, subject, key),
            IdempotentRequest.created_at < datetime.now(UTC) - KEY_LIFETIME,
        )
    )
    claimed = await session.scalar(
        insert(IdempotentRequest)
        .values(
            tenant=tenant,
            subject=subject,
            key=key,
            method_path=method_path,
            body_sha256=body_sha256,
        )
        .on_conflict_do_nothing()
        .returning(IdempotentRequest.key)
    )
    if claimed is not None:
        return None
    return await session.scalar(
        select(IdempotentRequest)
        .where(_this(tenant, subject, key))
        .execution_options(populate_existing=True)
    )


async def complete(
    session: AsyncSession,
    *,
    tenant: str,
    subject: str,
    key: str,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    await session.execute(
        update(IdempotentRequest)
        .where(_this(tenant, subject, key))
        .values(status=status, response_body=body, content_type=content_type)
    )


async def release(session: AsyncSession, *, tenant: str, subject: str, key: str) -> None:
    """Forget a claim whose request failed on our side: a retry may run it again."""
    await session.execute(delete(IdempotentRequest).where(_this(tenant, subject, key)))


def _this(tenant: str, subject: str, key: str) -> ColumnElement[bool]:
    return and_(
        IdempotentRequest.tenant == tenant,
        IdempotentRequest.subject == subject,
        IdempotentRequest.key == key,
    )
