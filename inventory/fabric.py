"""The fabric inventory: switches, which switch port each node NIC is cabled to, each node's
InfiniBand port GUIDs, and the per-switch VLANs of networks when VLANs are per switch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from inventory import pools
from inventory.errors import InventoryError
from inventory.models import Allocation, IbPort, Network, Nic, NicLink, Switch


class SwitchNotFound(InventoryError):
    pass


class FabricConflict(InventoryError):
    pass


@dataclass(frozen=True)
class SwitchAccess:
    """What the network worker needs to drive a switch (credentials included: never log it)."""

    id: str
    nos: str
    mgmt_address: str
    username: str
    password: str
    asn: int
    vtep_address: str | None
    routing: bool

    def __repr__(self) -> str:
        return f"SwitchAccess(id={self.id!r}, nos={self.nos!r})"


@dataclass(frozen=True)
class Link:
    mac: str
    switch_id: str
    port: str


async def enroll_switch(session: AsyncSession, switch: Switch) -> Switch:
    try:
        async with session.begin_nested():
            session.add(switch)
            await session.flush()
    except IntegrityError as exc:
        raise FabricConflict(f"switch {switch.id!r} is already enrolled") from exc
    return switch


async def get_switch(session: AsyncSession, switch_id: str, *, for_update: bool = False) -> Switch:
    switch = await session.get(Switch, switch_id, with_for_update=for_update)
    if switch is None:
        raise SwitchNotFound(switch_id)
    return switch


async def switches(
    session: AsyncSession, *, role: str | None = None, after: str | None = None, limit: int = 1000
) -> Sequence[Switch]:
    query = select(Switch).order_by(Switch.id).limit(limit)
    if role is not None:
        query = query.where(Switch.role == role)
    if after is not None:
        query = query.where(Switch.id > after)
    return (await session.scalars(query)).all()


async def remove_switch(session: AsyncSession, switch_id: str) -> None:
    switch = await get_switch(session, switch_id)
    try:
        async with session.begin_nested():
            await session.delete(switch)
            await session.flush()
    except IntegrityError as exc:
        raise FabricConflict(f"node NICs are still cabled to switch {switch_id!r}") from exc


def access(switch: Switch) -> SwitchAccess:
    return SwitchAccess(
        id=switch.id, nos=switch.nos, mgmt_address=switch.mgmt_address,
        username=switch.username, password=switch.password, asn=switch.asn,
        vtep_address=switch.vtep_address, routing=switch.routing,
    )  # fmt: skip


async def set_links(session: AsyncSession, node_id: str, links: Sequence[Link]) -> None:
    """Record the cabling of a node's NICs (replacing what was recorded)."""
    macs = set(await session.scalars(select(Nic.mac).where(Nic.node_id == node_id)))
    strangers = [link.mac for link in links if link.mac not in macs]
    if strangers:
        raise FabricConflict(f"MACs {strangers} are not NICs of node {node_id!r}")
    await session.execute(delete(NicLink).where(NicLink.mac.in_(macs)))
    try:
        async with session.begin_nested():
            session.add_all(NicLink(mac=k.mac, switch_id=k.switch_id, port=k.port) for k in links)
            await session.flush()
    except IntegrityError as exc:
        raise FabricConflict(
            "a switch port is cabled to another NIC, or a switch is not enrolled"
        ) from exc


async def links_of(session: AsyncSession, node_id: str) -> list[Link]:
    rows = await session.execute(
        select(NicLink.mac, NicLink.switch_id, NicLink.port)
        .join(Nic, Nic.mac == NicLink.mac)
        .where(Nic.node_id == node_id)
        .order_by(Nic.position)
    )
    return [Link(mac, switch_id, port) for mac, switch_id, port in rows]


async def set_ib_ports(
    session: AsyncSession, node_id: str, guids: Sequence[str], subnet: str = "default"
) -> None:
    await session.execute(delete(IbPort).where(IbPort.node_id == node_id))
    try:
        async with session.begin_nested():
            session.add_all(IbPort(guid=g, node_id=node_id, subnet=subnet) for g in guids)
            await session.flush()
    except IntegrityError as exc:
        raise FabricConflict("an InfiniBand port GUID belongs to another node") from exc


async def ib_guids_of(session: AsyncSession, node_id: str) -> list[str]:
    query = select(IbPort.guid).where(IbPort.node_id == node_id).order_by(IbPort.guid)
    return list(await session.scalars(query))


async def vlans_on(
    session: AsyncSession, settings: Settings, network: Network, switch_id: str
) -> tuple[int, int | None]:
    """The network's (VLAN, L3 VLAN) on a switch; allocated on first use when per switch."""
    if network.vlan is not None:
        return network.vlan, network.l3vlan
    held = dict(
        (
            await session.execute(
                select(Allocation.purpose, Allocation.value).where(
                    Allocation.network_id == network.id,
                    Allocation.pool == "vlan",
                    Allocation.scope == switch_id,
                )
            )
        ).all()
    )
    vlan_pool = pools.pools(settings)["vlan"]
    # The provisioning VLAN is held fabric-wide; keep it out of every switch's own pool.
    fixed = await session.scalar(select(Network.vlan).where(Network.kind == "provisioning"))
    for purpose in ("l2", "l3"):
        if purpose not in held:
            held[purpose] = await pools.allocate(
                session, vlan_pool, network.id, scope=switch_id, purpose=purpose,
                exclude=[fixed] if fixed is not None else [],
            )  # fmt: skip
    return int(held["l2"]), int(held["l3"])
