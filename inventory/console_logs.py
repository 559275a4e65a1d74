"""Serial console output kept per boot session, for operators: the console relay appends what
it reads, each chunk to the node's boot session of the time it was read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer, undefer

from inventory.errors import InventoryError
from inventory.models import BootSession, ConsoleLog, Node


class ConsoleLogNotFound(InventoryError):
    pass


@dataclass(frozen=True)
class ConsoleTarget:
    """A node whose console the relay holds: `address` for a socket console, else the BMC's
    for Serial-over-LAN (with its credentials)."""

    node_id: str
    kind: str
    address: str
    username: str
    password: str = field(repr=False)


async def targets(session: AsyncSession) -> list[ConsoleTarget]:
    """Every node with a console the relay can open: its console address (a console server's
    port, a lab VM's socket), else its IPMI BMC's Serial-over-LAN. (Redfish defines no
    serial console.)"""
    rows = await session.execute(
        select(
            Node.id, Node.console_address, Node.bmc_protocol, Node.bmc_address,
            Node.bmc_username, Node.bmc_password,
        ).where((Node.console_address.is_not(None)) | (Node.bmc_protocol == "ipmi"))
    )  # fmt: skip
    found = []
    for node_id, console, protocol, address, username, password in rows:
        if console is not None:
            found.append(ConsoleTarget(node_id, "socket", str(console), "", ""))
        elif protocol == "ipmi":
            found.append(ConsoleTarget(node_id, "ipmi-sol", address, username, password))
    return found


Read = tuple[datetime, bytes]  # when the relay read it, and what


async def append(
    session: AsyncSession, node_id: str, reads: Sequence[Read], *, max_bytes: int, kept: int
) -> None:
    """Add the reads (in order) to the node's logs: each to the boot session it belongs to,
    the newest opened by the time it was read (keeping each log's newest `max_bytes`); a new
    log drops the node's oldest past `kept`."""
    if not reads:
        return
    candidates = (
        await session.execute(
            select(BootSession.id, BootSession.image, BootSession.task, BootSession.created_at)
            .where(BootSession.node_id == node_id, BootSession.created_at <= reads[-1][0])
            .order_by(BootSession.created_at.desc())
            .limit(8)  # sessions opened within one flush, and the one before
        )
    ).all()
    groups: list[tuple[Row[Any] | None, bytearray]] = []
    for at, data in reads:
        boot = next((c for c in candidates if c.created_at <= at), None)
        if groups and groups[-1][0] == boot:
            groups[-1][1].extend(data)
        else:
            groups.append((boot, bytearray(data)))
    for boot, data in groups:
        await _append_one(session, node_id, boot, bytes(data), max_bytes, kept)


async def _append_one(
    session: AsyncSession, node_id: str, boot: Row[Any] | None, chunk: bytes, max_bytes: int,
    kept: int,
) -> None:  # fmt: skip
    log_id, created = await _log_for(session, node_id, boot)
    if created:
        await prune(session, node_id, kept)
    whole = ConsoleLog.output.concat(literal(chunk))
    start = func.greatest(func.octet_length(whole) - max_bytes + 1, 1)
    await session.execute(
        update(ConsoleLog)
        .where(ConsoleLog.id == log_id)
        .values(
            output=func.substring(whole, start),
            bytes_seen=ConsoleLog.bytes_seen + len(chunk),
            updated_at=func.now(),
        )
    )


async def _log_for(
    session: AsyncSession, node_id: str, boot: Row[Any] | None
) -> tuple[uuid.UUID, bool]:
    """The log of `boot` (None: of no session), and whether it was just created."""
    if boot is not None:
        boot_id, image, task = boot.id, boot.image, boot.task
        created = await session.scalar(
            insert(ConsoleLog)
            .values(id=uuid.uuid4(), node_id=node_id, boot_session_id=boot_id, image=image,
                    task=task)
            .on_conflict_do_nothing(
                index_elements=["boot_session_id"],
                index_where=ConsoleLog.boot_session_id.is_not(None),
            )
            .returning(ConsoleLog.id)
        )  # fmt: skip
        if created is None:
            found = await session.scalar(
                select(ConsoleLog.id).where(ConsoleLog.boot_session_id == boot_id)
            )
            assert found is not None
            return found, False
        return created, True
    found = await session.scalar(
        select(ConsoleLog.id)
        .where(ConsoleLog.node_id == node_id, ConsoleLog.boot_session_id.is_(None))
        .order_by(ConsoleLog.started_at.desc())
        .limit(1)
    )
    if found is not None:
        return found, False
    log_id = uuid.uuid4()
    session.add(ConsoleLog(id=log_id, node_id=node_id))
    await session.flush()
    return log_id, True


async def prune(session: AsyncSession, node_id: str, kept: int) -> None:
    """Drop the node's logs older than its newest `kept`."""
    old = (
        select(ConsoleLog.id)
        .where(ConsoleLog.node_id == node_id)
        .order_by(ConsoleLog.started_at.desc())
        .offset(kept)
    )
    await session.execute(delete(ConsoleLog).where(ConsoleLog.id.in_(old)))


async def listing(session: AsyncSession, node_id: str) -> Sequence[ConsoleLog]:
    """The node's logs, newest first (without their output)."""
    return (
        await session.scalars(
            select(ConsoleLog)
            .options(defer(ConsoleLog.output))
            .where(ConsoleLog.node_id == node_id)
            .order_by(ConsoleLog.started_at.desc())
        )
    ).all()


async def get(session: AsyncSession, node_id: str, log_id: uuid.UUID) -> ConsoleLog:
    log = await session.get(
        ConsoleLog, log_id, options=[undefer(ConsoleLog.output)], populate_existing=True
    )
    if log is None or log.node_id != node_id:
        raise ConsoleLogNotFound(f"{node_id} has no console log {log_id}")
    return log
