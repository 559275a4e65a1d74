"""Network activities: tenant networks on the switches and the InfiniBand subnet, and the move
of a node's ports between the provisioning network and a tenant network.

Every switch activity reads the desired state from the inventory and lets the driver converge
the switch to it (nothing is applied twice). Work on one switch is serialized across worker
processes with a PostgreSQL advisory lock held for the duration of the change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from drivers.infiniband.base import Member, PartitionError, PartitionManager
from drivers.switch.base import InvalidChange, Segment, Switch, SwitchError, Vrf
from inventory import fabric, locks, networks
from inventory.errors import InventoryError
from inventory.models import Network

from .errors import inventory_failure
from .heartbeat import piece

SwitchOpener = Callable[[fabric.SwitchAccess], Switch]


@dataclass
class NetworkOnSwitch:
    network_id: str
    switch_id: str


@dataclass
class NodePorts:
    node_id: str
    network_id: str | None  # None: the provisioning network


@dataclass
class NetworkNode:
    network_id: str
    node_id: str


@dataclass
class NetworkStateChange:
    network_id: str
    state: str
    allowed_from: list[str]
    reason: str | None = None


def switch_failure(switch_id: str, exc: SwitchError) -> ApplicationError:
    """Named by the switch's inventory id: that is what an operator looks up."""
    retryable = exc.retryable and not isinstance(exc, InvalidChange)
    return ApplicationError(
        f"switch {switch_id}: {exc}", type=type(exc).__name__, non_retryable=not retryable
    )


def partition_failure(exc: PartitionError) -> ApplicationError:
    return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=not exc.retryable)


def vrf_name(network: Network) -> str:
    return f"vrf{network.vrf_table}"  # Linux interface names are at most 15 characters


def gateway(network: Network) -> str:
    """The SVI (anycast gateway) address: the subnet's first host."""
    subnet = ipaddress.ip_network(str(network.cidr))
    return f"{next(subnet.hosts())}/{subnet.prefixlen}"


class NetworkActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        open_switch: SwitchOpener,
        partitions: PartitionManager | None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._open_switch = open_switch
        self._partitions = partitions

    @contextlib.asynccontextmanager
    async def _switch(self, switch_id: str) -> AsyncIterator[tuple[Switch, AsyncSession]]:
        """The switch's driver, with the fabric-wide lock on that switch held meanwhile."""
        async with self._sessions.begin() as session:
            await locks.hold(session, f"switch:{switch_id}")
            try:
                access = fabric.access(await fabric.get_switch(session, switch_id))
            except fabric.SwitchNotFound as exc:
                raise inventory_failure(exc) from exc
            switch = self._open_switch(access)
            try:
                yield switch, session
            except SwitchError as exc:
                raise switch_failure(switch_id, exc) from exc
            finally:
                await switch.close()

    async def _network(self, session: AsyncSession, network_id: str) -> Network:
        try:
            return await networks.get(session, uuid.UUID(network_id))
        except networks.NetworkNotFound as exc:
            raise inventory_failure(exc) from exc

    async def _ensure_on(self, switch: Switch, session: AsyncSession, network: Network) -> int:
        """The network's VRF and segment on this switch; returns the segment's VLAN."""
        vlan, l3vlan = await fabric.vlans_on(session, self._settings, network, switch.name)
        routed = network.kind == "tenant" and await self._routing(session, switch.name)
        if routed:
            assert network.vrf_table is not None and network.l3vni is not None and l3vlan
            vrf = Vrf(vrf_name(network), network.vrf_table, network.l3vni, l3vlan)
            await switch.ensure_vrf(vrf)
            segment = Segment(vlan, network.l2vni, vrf.name, gateway(network))
        else:
            segment = Segment(vlan, network.l2vni)
        await switch.ensure_segment(segment)
        return vlan

    async def _routing(self, session: AsyncSession, switch_id: str) -> bool:
        return (await fabric.get_switch(session, switch_id)).routing

    @activity.defn
    async def list_leaves(self) -> list[str]:
        async with self._sessions() as session:
            return [s.id for s in await fabric.switches(session, role="leaf")]

    @activity.defn
    async def ensure_network_on_switch(self, request: NetworkOnSwitch) -> None:
        await piece(self._ensure_network_on_switch(request))

    async def _ensure_network_on_switch(self, request: NetworkOnSwitch) -> None:
        async with self._switch(request.switch_id) as (switch, session):
            network = await self._network(session, request.network_id)
            await self._ensure_on(switch, session, network)

    @activity.defn
    async def remove_network_from_switch(self, request: NetworkOnSwitch) -> None:
        await piece(self._remove_network_from_switch(request))

    async def _remove_network_from_switch(self, request: NetworkOnSwitch) -> None:
        async with self._switch(request.switch_id) as (switch, session):
            network = await session.get(Network, uuid.UUID(request.network_id))
            if network is None:
                return  # deleted already: a retried activity
            vlan, _ = await fabric.vlans_on(session, self._settings, network, switch.name)
            await switch.remove_segment(vlan)  # takes its access ports out first
            await switch.remove_vrf(vrf_name(network))

    @activity.defn
    async def move_node_ports(self, request: NodePorts) -> None:
        """Put every cabled NIC of the node on the network (the provisioning one when None)."""
        async with self._sessions() as session:
            links = await fabric.links_of(session, request.node_id)
        for link in links:  # a switch at a time: a cancellation stops between two
            await piece(self._move_port(request, link))

    async def _move_port(self, request: NodePorts, link: fabric.Link) -> None:
        async with self._switch(link.switch_id) as (switch, session):
            if request.network_id is not None:
                network = await self._network(session, request.network_id)
            else:
                found = await networks.provisioning(session)
                if found is None:  # a cabled node would boot into nothing
                    raise ApplicationError(
                        f"{request.node_id} is cabled to {link.switch_id} but no"
                        " provisioning network is set (PUT /v1/fabric/provisioning-network)",
                        type="NoProvisioningNetwork",
                        non_retryable=True,
                    )
                network = found
            vlan = await self._ensure_on(switch, session, network)
            await switch.set_access_port(link.port, vlan)

    @activity.defn
    async def ensure_partition(self, network_id: str) -> None:
        if (manager := self._partitions) is None:
            return
        async with self._sessions() as session:
            network = await self._network(session, network_id)
        assert network.pkey is not None
        try:
            # Named by ids (DNS labels), never display names: OpenSM takes the name as is.
            await piece(
                manager.ensure_pkey(network.pkey, f"{network.tenant_id}_{network.name}"[:63])
            )
        except PartitionError as exc:
            raise partition_failure(exc) from exc

    @activity.defn
    async def remove_partition(self, network_id: str) -> None:
        if (manager := self._partitions) is None:
            return
        async with self._sessions() as session:
            network = await session.get(Network, uuid.UUID(network_id))
        if network is None or network.pkey is None:
            return
        try:
            await piece(manager.remove_pkey(network.pkey))
        except PartitionError as exc:
            raise partition_failure(exc) from exc

    @activity.defn
    async def add_node_to_partition(self, request: NetworkNode) -> None:
        if (manager := self._partitions) is None:
            return
        async with self._sessions() as session:
            network = await self._network(session, request.network_id)
            guids = await fabric.ib_guids_of(session, request.node_id)
        if guids and network.pkey is not None:
            try:
                await piece(manager.add_members(network.pkey, [Member(g) for g in guids]))
            except PartitionError as exc:
                raise partition_failure(exc) from exc

    @activity.defn
    async def remove_node_from_partition(self, request: NetworkNode) -> None:
        if (manager := self._partitions) is None:
            return
        async with self._sessions() as session:
            network = await session.get(Network, uuid.UUID(request.network_id))
            guids = await fabric.ib_guids_of(session, request.node_id)
        if guids and network is not None and network.pkey is not None:
            try:
                await piece(manager.remove_members(network.pkey, guids))
            except PartitionError as exc:
                raise partition_failure(exc) from exc

    @activity.defn
    async def set_network_state(self, request: NetworkStateChange) -> None:
        try:
            async with self._sessions.begin() as session:
                await networks.set_state(
                    session, uuid.UUID(request.network_id), request.state,
                    allowed_from=request.allowed_from, reason=request.reason,
                )  # fmt: skip
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn
    async def finish_network_delete(self, network_id: str) -> None:
        try:
            async with self._sessions.begin() as session:
                await networks.remove(session, uuid.UUID(network_id))
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn
    async def record_attachment(self, request: NetworkNode) -> bool:
        """Whether this call recorded it (False: it was there already)."""
        try:
            async with self._sessions.begin() as session:
                network_id = uuid.UUID(request.network_id)
                _, created = await networks.attach(session, network_id, request.node_id)
                return created
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn
    async def mark_attached(self, request: NetworkNode) -> None:
        try:
            async with self._sessions.begin() as session:
                network_id = uuid.UUID(request.network_id)
                await networks.set_attachment_state(
                    session, network_id, request.node_id, "attached"
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn
    async def leave_network(self, request: NetworkNode) -> None:
        """Ports to the provisioning network, IB ports out of this network's partition (whether
        or not the attachment is still recorded), then its attachment record, if any, goes
        (last: a retry still knows which network to leave)."""
        await self.move_node_ports(NodePorts(request.node_id, None))
        await self.remove_node_from_partition(request)
        async with self._sessions.begin() as session:
            await networks.detach(session, request.node_id, uuid.UUID(request.network_id))

    @activity.defn
    async def leave_tenant_network(self, node_id: str) -> None:
        """Out of whichever tenant network the node is on; ports to the provisioning network."""
        async with self._sessions() as session:
            attachment = await networks.attachment_of(session, node_id)
        if attachment is None:
            await self.move_node_ports(NodePorts(node_id, None))
            return
        await self.leave_network(NetworkNode(str(attachment.network_id), node_id))
