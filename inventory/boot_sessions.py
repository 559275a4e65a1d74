"""Boot sessions: one per provisioning, counting the node's network boots, each with its own
single-use phone-home token.

A node's OS starts a boot by POSTing its boot start (docs/boot-contract.md; fetching the iPXE
script is a pure read): that bumps the session's boot number, and the user-data it then fetches
carries the token of that boot, `<session id>.<boot>.<HMAC>`. The boot service renders and
checks tokens without the secret ever being stored in the database or in workflow history. Only
the current boot's token is accepted, once (one guarded UPDATE): a reboot makes the previous
boot's token stale whether or not it was used.

What a boot is handed is handed once (docs/boot-threat-model.md): its user-data (with its
token) and its cluster secrets, each recorded on the session by a guarded UPDATE; a second
request is refused and leaves an event on the node, since someone else may have fetched them.
A Kubernetes cluster's CA key goes to its controller node once (`Cluster.ca_key_holder`).

A session closes when its node is verified, unless the node's image is stateless (it network
boots every time): then it stays open, without expiry, until the node is released.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events, nodes
from inventory.models import BootSession, Cluster, Nic


def _digest(value: uuid.UUID, secret: bytes, purpose: bytes) -> str:
    digest = hmac.new(secret, purpose + value.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_id(value: uuid.UUID, secret: bytes, purpose: bytes = b"") -> str:
    """`<id>.<HMAC(secret, purpose + id)>`: a bearer token naming `value` for `purpose`."""
    return f"{value}.{_digest(value, secret, purpose)}"


def signed_id(token: str, secret: bytes, purpose: bytes = b"") -> uuid.UUID | None:
    """The id a well-formed token signed for `purpose` names; None otherwise."""
    raw_id, _, _ = token.partition(".")
    try:
        value = uuid.UUID(raw_id)
    except ValueError:
        return None
    return value if hmac.compare_digest(sign_id(value, secret, purpose), token) else None


def _expiring_purpose(purpose: bytes, expires: int) -> bytes:
    return purpose + b" %d:" % expires


def sign_expiring(value: uuid.UUID, secret: bytes, purpose: bytes, expires: int) -> str:
    """`<id>.<expiry (Unix seconds)>.<HMAC>`: a bearer token naming `value` for `purpose`
    until `expires`."""
    return f"{value}.{expires}.{_digest(value, secret, _expiring_purpose(purpose, expires))}"


@dataclass(frozen=True)
class ExpiringId:
    value: uuid.UUID
    expires: int  # Unix seconds

    def expired(self, now: float) -> bool:
        return self.expires <= now


def expiring_id(token: str, secret: bytes, purpose: bytes) -> ExpiringId | None:
    """The id and expiry a well-formed token signed for `purpose` names (expired or not);
    None otherwise."""
    parts = token.split(".") if token.isascii() else []
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 12:
        return None
    try:
        value = uuid.UUID(parts[0])
    except ValueError:
        return None
    expires = int(parts[1])
    signed = sign_expiring(value, secret, purpose, expires)
    return ExpiringId(value, expires) if hmac.compare_digest(signed, token) else None


@dataclass(frozen=True)
class BootToken:
    session_id: uuid.UUID
    boot: int


def _boot_purpose(boot: int) -> bytes:
    return b"boot %d:" % boot


def token_for(session_id: uuid.UUID, boot: int, secret: bytes) -> str:
    """The phone-home token of boot number `boot` of a session."""
    return f"{session_id}.{boot}.{_digest(session_id, secret, _boot_purpose(boot))}"


def boot_from_token(token: str, secret: bytes) -> BootToken | None:
    """The session and boot a well-formed, correctly signed token names; None otherwise. A
    token of the earlier format, `<session id>.<HMAC>`, names boot 0: it is good only in a
    session whose node started no boot since (one rendered before an upgrade)."""
    if not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) == 2:
        legacy = signed_id(token, secret)
        return None if legacy is None else BootToken(legacy, 0)
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 9:
        return None
    try:
        session_id = uuid.UUID(parts[0])
    except ValueError:
        return None
    boot = int(parts[1])
    return (
        BootToken(session_id, boot)
        if hmac.compare_digest(token_for(session_id, boot, secret), token)
        else None
    )


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
    task: str | None = None,
    deploy_image: str | None = None,
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
            task=task,
            deploy_image=deploy_image,
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


async def close_session(session: AsyncSession, session_id: uuid.UUID) -> bool:
    """Close one boot session; False if it was closed already (a repeat)."""
    closed = await session.scalar(
        update(BootSession)
        .where(BootSession.id == session_id, BootSession.closed_at.is_(None))
        .values(closed_at=datetime.now(UTC))
        .returning(BootSession.id)
    )
    return closed is not None


def _is_open() -> ColumnElement[bool]:
    return and_(
        BootSession.closed_at.is_(None),
        or_(BootSession.expires_at.is_(None), BootSession.expires_at > datetime.now(UTC)),
    )


def is_open(boot: BootSession) -> bool:
    return boot.closed_at is None and (
        boot.expires_at is None or boot.expires_at > datetime.now(UTC)
    )


async def open_session_by_mac(session: AsyncSession, mac: str) -> BootSession | None:
    """The open boot session of the node that has NIC `mac` (one query: the boot hot path)."""
    return await session.scalar(
        select(BootSession)
        .join(Nic, Nic.node_id == BootSession.node_id)
        .where(Nic.mac == mac.lower(), _is_open())
    )


async def open_session_of(session: AsyncSession, node_id: str) -> BootSession | None:
    return await session.scalar(
        select(BootSession).where(BootSession.node_id == node_id, _is_open())
    )


async def start_boot(session: AsyncSession, mac: str) -> BootSession | None:
    """A network boot of the node with NIC `mac` begins (its OS posted the boot start): the open
    session counts it, which makes the previous boot's token stale. None without a session."""
    node_of_mac = select(Nic.node_id).where(Nic.mac == mac.lower()).scalar_subquery()
    return await session.scalar(
        update(BootSession)
        .where(BootSession.node_id == node_of_mac, _is_open())
        .values(boots=BootSession.boots + 1, boot_started_at=func.now())
        .returning(BootSession)
    )


async def keep_open(session: AsyncSession, session_id: uuid.UUID) -> None:
    """A stateless node's session serves every boot of the node, until its release."""
    await session.execute(
        update(BootSession).where(BootSession.id == session_id).values(expires_at=None)
    )


async def get_session(session: AsyncSession, session_id: uuid.UUID) -> BootSession | None:
    return await session.get(BootSession, session_id)


def _boot_is_fresh(boot_ttl: timedelta) -> ColumnElement[bool]:
    """A boot's token is good for `boot_ttl` from the boot's start: a stateless node's session
    stays open while it is active, its boots' tokens do not."""
    return or_(
        BootSession.boot_started_at.is_(None),
        BootSession.boot_started_at > datetime.now(UTC) - boot_ttl,
    )


def is_current_boot(boot: BootSession, token: BootToken, boot_ttl: timedelta) -> bool:
    """The token is the open session's current boot's, and that boot is recent enough."""
    started = boot.boot_started_at
    return (
        is_open(boot)
        and boot.boots == token.boot
        and (started is None or started > datetime.now(UTC) - boot_ttl)
    )


async def accept_phone_home(
    session: AsyncSession, token: BootToken, boot_ttl: timedelta
) -> BootSession | None:
    """Mark the token's boot phoned home; None when the session is unknown, closed or expired,
    the token is not the current boot's, that boot started over `boot_ttl` ago, or it already
    phoned home."""
    return await session.scalar(
        update(BootSession)
        .where(
            BootSession.id == token.session_id,
            BootSession.boots == token.boot,
            or_(BootSession.phoned_home_boot.is_(None), BootSession.phoned_home_boot < token.boot),
            _is_open(),
            _boot_is_fresh(boot_ttl),
        )
        .values(used_at=datetime.now(UTC), phoned_home_boot=token.boot)
        .returning(BootSession)
    )


async def check_boot(session: AsyncSession, token: BootToken) -> BootSession | None:
    """Record that the token's boot was checked after the node's activation; None when it was
    (a repeated check) or its session is gone."""
    return await session.scalar(
        update(BootSession)
        .where(
            BootSession.id == token.session_id,
            or_(BootSession.checked_boot.is_(None), BootSession.checked_boot < token.boot),
        )
        .values(checked_boot=token.boot)
        .returning(BootSession)
    )


# -- what a boot is handed, once ------------------------------------------------------------------


async def hand_out_user_data(session: AsyncSession, session_id: uuid.UUID) -> BootSession | None:
    """Record that the open session's current boot gets its user-data (and token) now; None
    when that boot's user-data was handed out already (or the session closed meanwhile). Boot
    0, before any boot start of the session, is handed out once like any other."""
    return await session.scalar(
        update(BootSession)
        .where(
            BootSession.id == session_id,
            or_(
                BootSession.user_data_boot.is_(None),
                BootSession.user_data_boot < BootSession.boots,
            ),
            _is_open(),
        )
        .values(user_data_boot=BootSession.boots)
        .returning(BootSession)
    )


async def hand_out_secrets(
    session: AsyncSession, token: BootToken, boot_ttl: timedelta
) -> BootSession | None:
    """Record that the token's boot gets its cluster secrets now; None when they were handed
    out to that boot already, or the token is not the open session's current, fresh boot's."""
    return await session.scalar(
        update(BootSession)
        .where(
            BootSession.id == token.session_id,
            BootSession.boots == token.boot,
            or_(BootSession.secrets_boot.is_(None), BootSession.secrets_boot < token.boot),
            _is_open(),
            _boot_is_fresh(boot_ttl),
        )
        .values(secrets_boot=token.boot)
        .returning(BootSession)
    )


async def hand_out_ca_key(session: AsyncSession, cluster_id: uuid.UUID, node_id: str) -> bool:
    """Whether controller `node_id` gets the cluster's CA key now: once per controller node (a
    replacement controller once too); its later boots do not."""
    holder = await session.scalar(
        update(Cluster)
        .where(Cluster.id == cluster_id, Cluster.ca_key_holder.is_distinct_from(node_id))
        .values(ca_key_holder=node_id)
        .returning(Cluster.ca_key_holder)
    )
    return holder is not None


async def record_suspicious(session: AsyncSession, boot: BootSession, reason: str) -> None:
    """An event on the node, with no change of state: a boot's secret was asked for again, or
    a stale or spent token was used. Whoever may see the node sees it."""
    state, tenant, owner = (await session.execute(nodes.holder_query(boot.node_id))).one()
    events.record(
        session, kind="node", resource_id=boot.node_id, tenant_id=tenant, owner=owner,
        from_state=state, to_state=state, workflow_id=boot.workflow_id, reason=reason,
    )  # fmt: skip
