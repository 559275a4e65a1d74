"""Tenant networks and the provisioning network: their allocated values, lifecycle and the
nodes attached to them. Every state change is an event (kind "network")."""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from inventory import events, pools
from inventory.errors import InventoryError
from inventory.models import Allocation, Attachment, Network, Node, Switch, Tenant
from inventory.states import (
    NETWORK_TRANSITIONS,
    NetworkKind,
    NetworkState,
    NodeState,
    may_start_from,
)


class NetworkNotFound(InventoryError):
    pass


class NetworkConflict(InventoryError):
    """Name taken, CIDR overlapping, or a state that forbids the operation."""


class CidrOverlap(InventoryError):
    pass


class CidrNotAllowed(InventoryError):
    """A tenant's own CIDR outside the tenant ranges or prefix lengths of the settings."""

    def __init__(self, message: str, allowed_ranges: Sequence[str], prefixes: tuple[int, int]):
        super().__init__(message)
        self.allowed_ranges = list(allowed_ranges)
        self.prefixes = prefixes


def check_tenant_cidr(settings: Settings, cidr: str) -> str:
    """The CIDR a tenant asked for, normalized, when it is a unicast subnet the operator allows
    (inside a `tenant_cidr_ranges` range, prefix within the bounds); else CidrNotAllowed. A
    tenant subnet is routed on the fabric: a default route, multicast, loopback, link-local or
    someone's public space there would capture or leak traffic."""
    ranges = [ipaddress.IPv4Network(r) for r in settings.tenant_cidr_ranges]
    shortest, longest = settings.tenant_cidr_min_prefix, settings.tenant_cidr_max_prefix
    allowed = [str(r) for r in ranges]
    try:
        network = ipaddress.IPv4Network(cidr)  # strict: host bits must be zero
    except ValueError as exc:
        raise CidrNotAllowed(
            f"{cidr!r} is not an IPv4 network", allowed, (shortest, longest)
        ) from exc
    if not any(network.subnet_of(r) for r in ranges):
        raise CidrNotAllowed(
            f"{network} is not inside the tenant ranges {', '.join(allowed)}",
            allowed, (shortest, longest),
        )  # fmt: skip
    if not shortest <= network.prefixlen <= longest:
        raise CidrNotAllowed(
            f"{network}: a tenant subnet is /{shortest} to /{longest}", allowed, (shortest, longest)
        )
    return str(network)


@dataclass(frozen=True)
class NewNetwork:
    tenant_id: str
    owner: str
    name: str
    cidr: str | None  # None: allocated from the tenant supernet


def _event(session: AsyncSession, network: Network, to_state: str, **extra: str | None) -> None:
    events.record(
        session, kind="network", resource_id=str(network.id), tenant_id=network.tenant_id,
        owner=network.owner, to_state=to_state, **extra,
    )  # fmt: skip


async def create(session: AsyncSession, settings: Settings, new: NewNetwork) -> Network:
    """Insert the network with all its values allocated, in the caller's transaction.

    The tenant's row is locked first: two creates of one tenant check names and overlapping
    CIDRs one after the other, so neither can miss the other's."""
    if new.cidr is not None:
        new = dataclasses.replace(new, cidr=check_tenant_cidr(settings, new.cidr))
    state = await session.scalar(
        select(Tenant.state).where(Tenant.id == new.tenant_id).with_for_update()
    )
    if state in (None, "deleted"):  # deleted since the request was authorized
        raise NetworkConflict(f"tenant {new.tenant_id!r} does not exist")
    taken = await session.scalar(
        select(Network.id).where(Network.tenant_id == new.tenant_id, Network.name == new.name)
    )
    if taken is not None:
        raise NetworkConflict(f"the tenant already has a network named {new.name!r}")
    network = Network(
        id=uuid.uuid4(), kind=NetworkKind.TENANT.value, tenant_id=new.tenant_id,
        owner=new.owner, name=new.name, state=NetworkState.CREATING.value, cidr="0.0.0.0/32",
        l2vni=0,
    )  # fmt: skip
    session.add(network)
    await session.flush()
    available = pools.pools(settings)
    if new.cidr is None:
        own = await session.scalars(
            select(Network.cidr).where(Network.tenant_id == new.tenant_id, Network.id != network.id)
        )
        clash = pools.blocks_overlapping(settings, [str(c) for c in own])
        block = await pools.allocate(session, available["subnet"], network.id, exclude=clash)
        network.cidr = pools.subnet_of_block(settings, block)
    else:
        overlapping = await session.scalar(
            select(Network.name).where(
                Network.tenant_id == new.tenant_id,
                Network.id != network.id,
                Network.cidr.op("&&")(text("CAST(:cidr AS cidr)")),
            ),
            {"cidr": new.cidr},
        )
        if overlapping is not None:
            raise CidrOverlap(f"{new.cidr} overlaps the tenant's network {overlapping!r}")
        network.cidr = new.cidr
    network.l2vni = await pools.allocate(session, available["l2vni"], network.id)
    network.l3vni = await pools.allocate(session, available["l3vni"], network.id)
    network.vrf_table = await pools.allocate(session, available["vrf_table"], network.id)
    network.pkey = await pools.allocate(session, available["pkey"], network.id)
    if settings.vlan_scope == "fabric":
        network.vlan = await pools.allocate(session, available["vlan"], network.id, purpose="l2")
        network.l3vlan = await pools.allocate(session, available["vlan"], network.id, purpose="l3")
    await session.flush()
    _event(session, network, NetworkState.CREATING.value, reason="created")
    return network


async def ensure_provisioning(
    session: AsyncSession, settings: Settings, *, vlan: int, vni: int, cidr: str
) -> Network:
    """The one provisioning network, with its values held in the pools."""
    network = await provisioning(session)
    if network is None:
        network = Network(
            id=uuid.uuid4(), kind=NetworkKind.PROVISIONING.value, name="provisioning",
            state=NetworkState.READY.value,
            cidr=cidr, vlan=vlan, l2vni=vni,
        )  # fmt: skip
        session.add(network)
        await session.flush()
    elif (network.vlan, network.l2vni, str(network.cidr)) != (vlan, vni, cidr):
        if await session.scalar(select(func.count()).select_from(Attachment)):
            raise NetworkConflict("the provisioning network changes only with no attachments")
        moved = (network.vlan, network.l2vni) != (vlan, vni)
        if moved and await session.scalar(select(func.count()).select_from(Switch)):
            # Its segment is on the switches: nothing would move their ports and remove it.
            raise NetworkConflict(
                "the provisioning VLAN and VNI are fixed once switches are enrolled"
            )
        await pools.release_all(session, network.id)
        network.vlan, network.l2vni, network.cidr = vlan, vni, cidr
    per_switch = await session.scalar(
        select(func.count())
        .select_from(Allocation)
        .where(
            Allocation.pool == "vlan", Allocation.scope != pools.FABRIC, Allocation.value == vlan
        )
    )
    if per_switch:
        raise NetworkConflict(f"VLAN {vlan} is held by tenant networks on some switches")
    available = pools.pools(settings)
    try:
        # Pools are locked in the order create() takes them (l2vni before vlan): the
        # opposite order deadlocks with a tenant network created meanwhile.
        await pools.reserve(session, available["l2vni"], vni, network.id)
        await pools.reserve(session, available["vlan"], vlan, network.id, purpose="l2")
    except pools.ValueTaken as exc:
        raise NetworkConflict(str(exc)) from exc
    return network


async def provisioning(session: AsyncSession) -> Network | None:
    return await session.scalar(select(Network).where(Network.kind == NetworkKind.PROVISIONING))


async def get(session: AsyncSession, network_id: uuid.UUID) -> Network:
    network = await session.get(Network, network_id)
    if network is None:
        raise NetworkNotFound(str(network_id))
    return network


async def listing(
    session: AsyncSession,
    *,
    tenant: str | None,
    owner: str | None,
    state: NetworkState | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Network]:
    query = (
        select(Network).where(Network.kind == NetworkKind.TENANT).order_by(Network.id).limit(limit)
    )
    if tenant is not None:
        query = query.where(Network.tenant_id == tenant)
    if owner is not None:
        query = query.where(Network.owner == owner)
    if state is not None:
        query = query.where(Network.state == state)
    if after is not None:
        query = query.where(Network.id > after)
    return (await session.scalars(query)).all()


async def set_state(
    session: AsyncSession,
    network_id: uuid.UUID,
    to_state: str,
    *,
    allowed_from: Sequence[str] | None = None,
    reason: str | None = None,
) -> Network:
    """Guarded state change; repeating one that is done changes nothing. Only a change
    NETWORK_TRANSITIONS has, from one of `allowed_from` when the caller names them (None: any
    state the table allows); else NetworkConflict."""
    target = NetworkState(to_state)
    network = await get(session, network_id)
    if network.state == target and network.last_error == reason:
        return network
    if network.state not in may_start_from(NETWORK_TRANSITIONS, target, allowed_from):
        raise NetworkConflict(f"network {network.name!r} is {network.state}")
    before = network.state
    await session.execute(
        update(Network)
        .where(Network.id == network_id)
        .values(state=target.value, last_error=reason if target == NetworkState.FAILED else None)
    )
    _event(session, network, target.value, from_state=before, reason=reason)
    return await session.get_one(Network, network_id, populate_existing=True)


async def begin_delete(session: AsyncSession, network_id: uuid.UUID) -> Network:
    """Mark the network for deletion. Under its row lock, which attaching takes too, so no
    attachment can be recorded in between. Not while it is being created (its workflow owns
    it); again when it already is `deleting` (a retry): the transition table says both."""
    await session.get(Network, network_id, with_for_update=True)
    attached = await session.scalar(
        select(func.count()).select_from(Attachment).where(Attachment.network_id == network_id)
    )
    if attached:
        raise NetworkConflict(f"{attached} node(s) are still attached; detach them first")
    return await set_state(session, network_id, NetworkState.DELETING)


async def remove(session: AsyncSession, network_id: uuid.UUID) -> None:
    """Delete the record and return every value to its pools (the switches are clean)."""
    network = await session.get(Network, network_id)
    if network is None:
        return  # already gone: a retried activity
    if network.state != NetworkState.DELETING:
        raise NetworkConflict(f"network {network.name!r} is {network.state}, not deleting")
    await pools.release_all(session, network_id)
    _event(session, network, "deleted", from_state=NetworkState.DELETING.value)
    await session.delete(network)


async def attach(
    session: AsyncSession, network_id: uuid.UUID, node_id: str
) -> tuple[Attachment, bool]:
    """Record that `node_id` joins the network; (the attachment, whether this call made it).
    Only a `ready` network (under its row lock, against a concurrent delete) and an `active`
    node of the network's tenant (under the node's row lock, against a release)."""
    network = await session.get(Network, network_id, with_for_update=True)
    if network is None or network.state != NetworkState.READY:
        state = network.state if network else "gone"
        raise NetworkConflict(f"network {network_id} is {state}, not ready")
    node = await session.get(Node, node_id, with_for_update=True)
    if node is None or node.tenant_id != network.tenant_id or node.state != NodeState.ACTIVE:
        state = node.state if node else "gone"
        raise NetworkConflict(f"node {node_id!r} is {state} (only an active node of the tenant)")
    current = await session.get(Attachment, node_id)
    if current is not None:
        if current.network_id != network_id:
            raise NetworkConflict(f"node {node_id!r} is attached to another network")
        return current, False
    try:
        async with session.begin_nested():
            attachment = Attachment(node_id=node_id, network_id=network_id, state="attaching")
            session.add(attachment)
            await session.flush()
    except IntegrityError as exc:
        raise NetworkConflict(f"node {node_id!r} is attached to another network") from exc
    return attachment, True


async def attachment_of(session: AsyncSession, node_id: str) -> Attachment | None:
    return await session.get(Attachment, node_id)


async def attachments(session: AsyncSession, network_id: uuid.UUID) -> Sequence[Attachment]:
    query = select(Attachment).where(Attachment.network_id == network_id)
    return (await session.scalars(query.order_by(Attachment.node_id))).all()


async def set_attachment_state(
    session: AsyncSession, network_id: uuid.UUID, node_id: str, state: str
) -> None:
    """Raises when the attachment is gone (a release or detach took the node out meanwhile)."""
    result = await session.execute(
        update(Attachment)
        .where(Attachment.node_id == node_id, Attachment.network_id == network_id)
        .values(state=state)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NetworkConflict(f"node {node_id!r} left network {network_id} meanwhile")


async def detach(session: AsyncSession, node_id: str, network_id: uuid.UUID) -> None:
    """Forget the node's attachment to this network (none, or to another: nothing to do)."""
    attachment = await session.get(Attachment, node_id)
    if attachment is not None and attachment.network_id == network_id:
        await session.delete(attachment)
