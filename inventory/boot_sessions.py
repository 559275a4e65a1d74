"""Boot sessions: one per network boot, with a single-use phone-home token.

The token is `<session id>.<HMAC(secret, session id)>`: the boot service can render it into
user-data and check it without the secret ever being stored in the database or in workflow
history. Accepting a phone-home marks the session used in one guarded UPDATE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import BootSession, Nic


def sign_id(value: uuid.UUID, secret: bytes, purpose: bytes = b"") -> str:
    """`<id>.<HMAC(secret, purpose + id)>`: a bearer token naming `value` for `purpose`."""
    digest = hmac.new(secret, purpose + value.bytes, hashlib.sha256).digest()
    return f"{value}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def signed_id(token: str, secret: bytes, purpose: bytes = b"") -> uuid.UUID | None:
    """The id a well-formed token signed for `purpose` names; None otherwise."""
    raw_id, _, _ = token.partition(".")
    try:
        value = uuid.UUID(raw_id)
    except ValueError:
        return None
    return value if hmac.compare_digest(sign_id(value, secret, purpose), token) else None


def token_for(session_id: uuid.UUID, secret: bytes) -> str:
    return sign_id(session_id, secret)


def session_id_from_token(token: str, secret: bytes) -> uuid.UUID | None:
    """The session id a well-formed, correctly signed token names; None otherwise."""
    return signed_id(token, secret)


async def open_session(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    node_id: str,
    workflow_id: str,
    image: str,
    kernel_args: list[str],
    kernel_sha256: str | None,
    initrd_sha256: str | None,
    ttl: timedelta,
) -> None:
    """Open boot session `session_id` for the node, closing any other open one. Opening the same
    id again (a retried activity) changes nothing."""
    await close_sessions(session, node_id, keep=session_id)
    await session.execute(
        insert(BootSession)
        .values(
            id=session_id,
            node_id=node_id,
            workflow_id=workflow_id,
            image=image,
            kernel_args=kernel_args,
            kernel_sha256=kernel_sha256,
            initrd_sha256=initrd_sha256,
            expires_at=datetime.now(UTC) + ttl,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )


async def close_sessions(
    session: AsyncSession, node_id: str, *, keep: uuid.UUID | None = None
) -> None:
    """Close the node's open boot sessions (all but `keep`)."""
    query = update(BootSession).where(
        BootSession.node_id == node_id, BootSession.closed_at.is_(None)
    )
    if keep is not None:
        query = query.where(BootSession.id != keep)
    await session.execute(query.values(closed_at=datetime.now(UTC)))


def _is_open() -> ColumnElement[bool]:
    return and_(BootSession.closed_at.is_(None), BootSession.expires_at > datetime.now(UTC))


async def open_session_by_mac(session: AsyncSession, mac: str) -> BootSession | None:
    """The open boot session of the node that has NIC `mac` (one query: the boot hot path)."""
    return await session.scalar(
        select(BootSession)
        .join(Nic, Nic.node_id == BootSession.node_id)
        .where(Nic.mac == mac.lower(), _is_open())
    )


async def get_session(session: AsyncSession, session_id: uuid.UUID) -> BootSession | None:
    return await session.get(BootSession, session_id)


async def accept_phone_home(session: AsyncSession, session_id: uuid.UUID) -> BootSession | None:
    """Mark the session's token used; None when it is unknown, used, closed or expired."""
    return await session.scalar(
        update(BootSession)
        .where(BootSession.id == session_id, BootSession.used_at.is_(None), _is_open())
        .values(used_at=datetime.now(UTC))
        .returning(BootSession)
    )
