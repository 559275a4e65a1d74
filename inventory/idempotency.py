"""Idempotency keys: the first request with a key claims it; repeats replay its response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import IdempotentRequest

KEY_LIFETIME = timedelta(hours=24)


async def claim(
    session: AsyncSession, *, subject: str, key: str, method_path: str, body_sha256: str
) -> IdempotentRequest | None:
    """Claim the key for this request: None if claimed now, else the earlier request's row."""
    await session.execute(
        delete(IdempotentRequest).where(
            IdempotentRequest.subject == subject,
            IdempotentRequest.key == key,
            IdempotentRequest.created_at < datetime.now(UTC) - KEY_LIFETIME,
        )
    )
    claimed = await session.scalar(
        insert(IdempotentRequest)
        .values(subject=subject, key=key, method_path=method_path, body_sha256=body_sha256)
        .on_conflict_do_nothing()
        .returning(IdempotentRequest.key)
    )
    if claimed is not None:
        return None
    return await session.scalar(
        select(IdempotentRequest)
        .where(IdempotentRequest.subject == subject, IdempotentRequest.key == key)
        .execution_options(populate_existing=True)
    )


async def complete(
    session: AsyncSession, *, subject: str, key: str, status: int, body: bytes, content_type: str
) -> None:
    await session.execute(
        update(IdempotentRequest)
        .where(IdempotentRequest.subject == subject, IdempotentRequest.key == key)
        .values(status=status, response_body=body, content_type=content_type)
    )


async def release(session: AsyncSession, *, subject: str, key: str) -> None:
    """Forget a claim whose request failed on our side: a retry may run it again."""
    await session.execute(
        delete(IdempotentRequest).where(
            IdempotentRequest.subject == subject, IdempotentRequest.key == key
        )
    )
