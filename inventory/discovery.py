"""Discovered nodes: MACs that asked the boot service for an iPXE script without belonging to
any node (a server cabled and PXE booting before it was enrolled, or a typo in an enrollment).

The boot service never boots them; it records each one with when and whence it asked, and an
event for the operators on its first boot. Enrolling a node with that MAC accepts it (the record
goes, with an event); an operator can also dismiss one. At most `cap` MACs are kept: the boot
endpoints are unauthenticated, so a flood of made-up MACs must not grow the table without bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events
from inventory.errors import InventoryError
from inventory.models import DiscoveredMac

KIND = "discovered-node"  # the events' kind (platform roles read them)


class DiscoveredNotFound(InventoryError):
    pass


async def record_boot(session: AsyncSession, mac: str, address: str | None, *, cap: int) -> bool:
    """Count a network boot of an unknown MAC; True if it was discovered just now."""
    known = await session.scalar(select(DiscoveredMac.mac).where(DiscoveredMac.mac == mac))
    if known is None and (await session.scalar(select(func.count(DiscoveredMac.mac))) or 0) >= cap:
        return False
    upsert = insert(DiscoveredMac).values(mac=mac, last_address=address)
    inserted = await session.scalar(
        upsert.on_conflict_do_update(
            index_elements=[DiscoveredMac.mac],
            set_={
                "boots": DiscoveredMac.boots + 1,
                "last_seen": func.now(),
                "last_address": upsert.excluded.last_address,
            },
        ).returning(DiscoveredMac.boots == 1)
    )
    if inserted:
        events.record(
            session, kind=KIND, resource_id=mac, to_state="discovered",
            reason=f"network booted from {address or 'an unknown address'} without a node",
        )  # fmt: skip
    return bool(inserted)


async def listing(session: AsyncSession, *, after: str | None, limit: int) -> list[DiscoveredMac]:
    """By MAC, from the one after `after`."""
    query = select(DiscoveredMac).order_by(DiscoveredMac.mac).limit(limit)
    if after is not None:
        query = query.where(DiscoveredMac.mac > after)
    return list(await session.scalars(query))


async def dismiss(session: AsyncSession, mac: str, *, by: str) -> None:
    gone = await session.scalar(
        delete(DiscoveredMac).where(DiscoveredMac.mac == mac).returning(DiscoveredMac.mac)
    )
    if gone is None:
        raise DiscoveredNotFound(f"no discovered node with MAC {mac}")
    events.record(
        session, kind=KIND, resource_id=mac, from_state="discovered", to_state="dismissed",
        reason=f"dismissed by {by}",
    )  # fmt: skip


async def accept(session: AsyncSession, macs: Sequence[str], node_id: str) -> None:
    """The node enrolled with these MACs: their discovered records go."""
    accepted = await session.scalars(
        delete(DiscoveredMac).where(DiscoveredMac.mac.in_(macs)).returning(DiscoveredMac.mac)
    )
    for mac in accepted:
        events.record(
            session, kind=KIND, resource_id=mac, from_state="discovered", to_state="accepted",
            reason=f"enrolled as node {node_id}",
        )  # fmt: skip
