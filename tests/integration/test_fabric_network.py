"""Tenant networks on Ethernet, end to end: the API and the network workflows drive the Linux +
FRR leaves of a real VXLAN/EVPN fabric (lab.fabric) over SSH. The module runs twice: on
namespace leaves (the host kernel has no VRF: enrolled as L2 switches) and on User-Mode-Linux
leaves that route (each tenant network gets its VRF, L3 VNI and anycast gateway).

Each lab node's NIC is a host of the fabric (its MAC set to the node's): lab-001 on leaf1 swp1,
lab-002 on leaf2 swp1 (tenant acme), lab-003 on leaf1 swp2, lab-004 on leaf2 swp2 (tenant
globex). Both tenants use 10.50.0.0/24 with the same host addresses. Packets must cross the
fabric within a tenant and never reach the other tenant; detaching a node cuts it off and
re-attaching restores it; deleting the networks leaves no segment on any switch and returns
every pool value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from activities.network import NetworkActivities, NetworkNode, NetworkOnSwitch, NodePorts
from core.contracts import network_workflow_id
from drivers.switch.base import Nos, Switch, SwitchState
from drivers.switch.factory import connect
from inventory.fabric import SwitchAccess
from inventory.models import Allocation, Node
from lab.fabric import Fabric, FabricConfig
from tests.platform import Platform, Ports, running_platform
from workers.fabric_drivers import open_switch_from_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = Ports(api=18220, lab_control=18320, redfish=18321, ipmi_base=19620)
PREFIX, MGMT = "mpfn", "172.31.253.0/24"  # pinned: this module's namespaces and subnet
LEAVES = ("leaf1", "leaf2")
# node -> (fabric host, leaf, port, tenant, address)
CABLING = {
    "lab-001": ("h1-1", "leaf1", "swp1", "acme", "10.50.0.11/24"),
    "lab-002": ("h2-1", "leaf2", "swp1", "acme", "10.50.0.12/24"),
    "lab-003": ("h1-2", "leaf1", "swp2", "globex", "10.50.0.11/24"),
    "lab-004": ("h2-2", "leaf2", "swp2", "globex", "10.50.0.12/24"),
}
PROVISIONING = {"vlan": 10, "vni": 10010, "cidr": "192.168.100.0/24"}


def routed(fabric: Fabric) -> bool:
    return fabric.config.leaf_kind == "uml"


def host(node_id: str) -> str:
    return CABLING[node_id][0]


@pytest.fixture(scope="module", params=["netns", "uml"])
def fabric(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fabric]:
    state_dir = tmp_path_factory.mktemp("fab")
    config = FabricConfig(
        prefix=PREFIX, state_dir=state_dir, mgmt_subnet=MGMT, leaf_kind=request.param
    )
    lab = Fabric(config)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
    fabric: Fabric,
) -> AsyncIterator[Platform]:
    async with running_platform(
        name=f"t_fabric_network_{fabric.config.leaf_kind}",
        postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("fabric-network"), ports=PORTS, nodes=len(CABLING),
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin")) as api:
            for leaf in LEAVES:
                access = fabric.access(leaf)
                enrolled = await api.post("/v1/switches", json={
                    "id": leaf, "role": "leaf", "nos": "linux-frr",
                    "mgmt_address": access.host, "username": access.username,
                    "password": access.password, "asn": access.asn,
                    "vtep_address": access.vtep, "routing": routed(fabric),
                })  # fmt: skip
                assert enrolled.status_code == 201, enrolled.text
            reply = await api.put("/v1/fabric/provisioning-network", json=PROVISIONING)
            assert reply.status_code == 200, reply.text
            for tenant in ("acme", "globex"):
                created = await api.post("/v1/tenants", json={"id": tenant, "display_name": tenant})
                assert created.is_success, created.text
            for node_id, (fabric_host, leaf, port, _tenant, address) in CABLING.items():
                mac = (await api.get(f"/v1/nodes/{node_id}")).json()["macs"][0]
                fabric.host_exec(fabric_host, "ip", "link", "set", "dev", "eth0", "address", mac)
                fabric.set_address(fabric_host, address)
                cabled = await api.put(
                    f"/v1/nodes/{node_id}/cabling",
                    json={"links": [{"mac": mac, "switch": leaf, "port": port}]},
                )
                assert cabled.status_code == 200, cabled.text
        async with running.sessions.begin() as session:
            for node_id, (*_, tenant, _address) in CABLING.items():
                await session.execute(
                    update(Node).where(Node.id == node_id).values(tenant_id=tenant, state="active")
                )
        yield running


async def switch_state(fabric: Fabric, leaf: str) -> SwitchState:
    """Read back from the switch itself, with the driver the worker uses."""
    access = fabric.access(leaf)
    switch = connect(
        Nos.LINUX_FRR, name=leaf, address=access.host, username=access.username,
        password=access.password, asn=access.asn, vtep_address=access.vtep, timeout=20,
    )  # fmt: skip
    try:
        return await switch.state()
    finally:
        await switch.close()


async def eventually(check: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        done = await check()
        while not done:
            await asyncio.sleep(0.2)
            done = await check()


async def reachable(fabric: Fabric, src: str, dst: str) -> None:
    await asyncio.to_thread(fabric.wait_reachable, src, dst, 15.0)


async def pings(fabric: Fabric, src: str, dst: str, **kwargs: Any) -> int:
    fabric.flush_neighbors(src)
    return await asyncio.to_thread(fabric.ping, src, dst, **kwargs)


async def forget_neighbors(fabric: Fabric) -> None:
    """No neighbor probe pending anywhere: Linux re-validates a neighbor used in an earlier
    ping ~5 s later by unicast ARP, from a host or from a gateway (an SVI)."""
    for node_id in CABLING:
        fabric.flush_neighbors(host(node_id))
    if routed(fabric):
        for leaf in LEAVES:
            segments = (await switch_state(fabric, leaf)).segments.values()
            for svi in (f"br{s.vlan}" for s in segments if s.gateway):
                # Exits 255 on the UML leaves here (cause not found). A flush that did not
                # happen can only make the isolation check below stricter, never laxer.
                fabric.switch_exec(leaf, "sh", "-c", f"ip neigh flush dev {svi} || true")


async def create_network(platform: Platform, tenant: str) -> dict[str, Any]:
    async with platform.api(platform.mint("tenant-admin", tenant=tenant)) as api:
        reply = await api.post("/v1/networks", json={"name": "lan", "cidr": "10.50.0.0/24"})
        assert reply.status_code == 201, reply.text
        url = f"/v1/networks/{reply.json()['id']}"

        async def ready() -> bool:
            network = (await api.get(url)).json()
            assert network["state"] != "failed", network["last_error"]
            return network["state"] == "ready"

        await eventually(ready)
        return (await api.get(url)).json()


async def attach(platform: Platform, network: dict[str, Any], *node_ids: str) -> None:
    url = f"/v1/networks/{network['id']}/attachments"
    async with platform.api(platform.mint("tenant-admin", tenant=network["tenant_id"])) as api:
        for node_id in node_ids:
            reply = await api.post(url, json={"node_id": node_id})
            assert reply.status_code == 202, reply.text

        async def attached() -> bool:
            items = (await api.get(url)).json()["items"]
            states = {a["node_id"]: a["state"] for a in items}
            return all(states.get(node_id) == "attached" for node_id in node_ids)

        await eventually(attached)


async def detach(platform: Platform, network: dict[str, Any], node_id: str) -> None:
    url = f"/v1/networks/{network['id']}/attachments"
    async with platform.api(platform.mint("tenant-admin", tenant=network["tenant_id"])) as api:
        assert (await api.delete(f"{url}/{node_id}")).status_code == 202

        async def gone() -> bool:
            items = (await api.get(url)).json()["items"]
            return node_id not in {a["node_id"] for a in items}

        await eventually(gone)


async def test_tenant_networks_isolate_tenants_across_the_fabric(
    platform: Platform, fabric: Fabric
) -> None:
    acme, globex = await create_network(platform, "acme"), await create_network(platform, "globex")
    assert acme["cidr"] == globex["cidr"] and acme["l2vni"] != globex["l2vni"]
    for leaf in LEAVES:
        state = await switch_state(fabric, leaf)
        assert {acme["l2vni"], globex["l2vni"]} <= {s.vni for s in state.segments.values()}
        vrfs = {v.l3vni for v in state.vrfs.values()}
        assert vrfs == ({acme["l3vni"], globex["l3vni"]} if routed(fabric) else set())

    await attach(platform, acme, "lab-001", "lab-002")
    await attach(platform, globex, "lab-003", "lab-004")
    await reachable(fabric, host("lab-001"), "10.50.0.12")
    await reachable(fabric, host("lab-003"), "10.50.0.12")
    # The same address answers from the tenant's own node on the other leaf.
    assert fabric.neighbor_mac(host("lab-001"), "10.50.0.12") == fabric.mac(host("lab-002"))
    assert fabric.neighbor_mac(host("lab-003"), "10.50.0.12") == fabric.mac(host("lab-004"))
    if routed(fabric):  # each node's own leaf answers for the gateway, with the anycast MAC
        for node_id in CABLING:
            await reachable(fabric, host(node_id), "10.50.0.1")
            gateway_mac = fabric.neighbor_mac(host(node_id), "10.50.0.1")
            assert gateway_mac == platform.settings.anycast_gateway_mac
        # Each gateway re-validates the node it answered by unicast ARP ~5 s later (the SVI
        # flush below fails on UML): let that pass before counting packets.
        await asyncio.sleep(6)

    hosts = [host(n) for n in CABLING]
    for pinger, peer, others in (
        ("lab-001", "lab-002", ("lab-003", "lab-004")),
        ("lab-003", "lab-004", ("lab-001", "lab-002")),
    ):
        await forget_neighbors(fabric)
        before = {name: fabric.counters(name) for name in hosts}
        assert (
            await pings(fabric, host(pinger), "10.50.0.12", count=5, interval=0.05, timeout=3) == 5
        )
        after = {name: fabric.counters(name) for name in hosts}
        assert after[host(peer)]["rx"] - before[host(peer)]["rx"] >= 6  # ARP + 5 echoes
        for other in others:  # same addresses, other tenant: not a single packet
            assert after[host(other)] == before[host(other)], f"{other} saw {pinger}'s traffic"

    # Detach: lab-002's port goes back to the provisioning VLAN and acme loses it.
    await detach(platform, acme, "lab-002")
    leaf2 = await switch_state(fabric, "leaf2")
    assert leaf2.access_ports["swp1"] == PROVISIONING["vlan"]
    assert await pings(fabric, host("lab-001"), "10.50.0.12", count=3, timeout=0.5) == 0
    assert await pings(fabric, host("lab-003"), "10.50.0.12", timeout=3) == 1  # globex is untouched

    await attach(platform, acme, "lab-002")
    await reachable(fabric, host("lab-001"), "10.50.0.12")

    # Delete: detach everything, then the networks; nothing stays on the switches or in the pools.
    for network, nodes in ((acme, ("lab-001", "lab-002")), (globex, ("lab-003", "lab-004"))):
        for node_id in nodes:
            await detach(platform, network, node_id)
        async with platform.api(platform.mint("tenant-admin", tenant=network["tenant_id"])) as api:
            url = f"/v1/networks/{network['id']}"
            assert (await api.delete(url)).status_code == 202

            async def deleted() -> bool:
                return (await api.get(url)).status_code == 404  # noqa: B023

            await eventually(deleted)
    for leaf in LEAVES:
        state = await switch_state(fabric, leaf)
        assert {s.vni for s in state.segments.values()} == {PROVISIONING["vni"]}
        assert set(state.access_ports.values()) == {PROVISIONING["vlan"]}
        assert state.vrfs == {}
    async with platform.sessions() as session:
        held = set((await session.execute(select(Allocation.pool, Allocation.value))).all())
    # Only the provisioning network's values stay held.
    assert held == {("vlan", PROVISIONING["vlan"]), ("l2vni", PROVISIONING["vni"])}


async def test_switch_credentials_stay_inside_and_a_reset_converges_once_they_are_fixed(
    platform: Platform, fabric: Fabric
) -> None:
    real = fabric.access("leaf2").password
    async with platform.api(platform.mint("operator")) as ops:
        for reply in ((await ops.get("/v1/switches")), (await ops.get("/v1/switches/leaf2"))):
            assert reply.status_code == 200 and real not in reply.text
        rotated = await ops.patch("/v1/switches/leaf2", json={"password": "not-the-password"})
        assert rotated.status_code == 200 and "not-the-password" not in rotated.text
    async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
        assert (await api.patch("/v1/switches/leaf2", json={"password": "x"})).status_code == 403
        reply = await api.post("/v1/networks", json={"name": "lan2", "cidr": "10.60.0.0/24"})
        assert reply.status_code == 201, reply.text
        url = f"/v1/networks/{reply.json()['id']}"

        async def failed() -> bool:
            return (await api.get(url)).json()["state"] == "failed"

        await eventually(failed)
        network = (await api.get(url)).json()
    assert "leaf2" in network["last_error"] and real not in network["last_error"]
    # Unwound: leaf1, which it did reach, holds no trace of it.
    leaf1 = await switch_state(fabric, "leaf1")
    assert network["l2vni"] not in {s.vni for s in leaf1.segments.values()}

    async with platform.api(platform.mint("operator")) as ops:
        fixed = await ops.patch("/v1/switches/leaf2", json={"password": real})
        assert fixed.status_code == 200
    await platform.sre_reset(network_workflow_id(network["id"]), "SRE: leaf2 credentials fixed")
    async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:

        async def ready() -> bool:
            return (await api.get(url)).json()["state"] == "ready"

        await eventually(ready)
        for leaf in LEAVES:
            segments = (await switch_state(fabric, leaf)).segments.values()
            assert network["l2vni"] in {s.vni for s in segments}
        assert (await api.delete(url)).status_code == 202

        async def deleted() -> bool:
            return (await api.get(url)).status_code == 404

        await eventually(deleted)


async def test_every_switch_activity_run_twice_configures_nothing_the_second_time(
    platform: Platform, fabric: Fabric
) -> None:
    sent: list[str] = []  # every configuration command any switch received

    def recording(access: SwitchAccess) -> Switch:
        switch = open_switch_from_settings(platform.settings)(access)
        configure = switch.transport.configure

        async def record(commands: Sequence[str]) -> None:
            sent.extend(commands)
            await configure(commands)

        switch.transport.configure = record  # type: ignore[method-assign]
        return switch

    activities = NetworkActivities(
        platform.sessions, platform.settings, open_switch=recording, partitions=None
    )
    network = await create_network(platform, "acme")
    on_leaf1 = NetworkOnSwitch(network["id"], "leaf1")
    steps = [
        lambda: activities.ensure_network_on_switch(on_leaf1),
        lambda: activities.move_node_ports(NodePorts("lab-001", network["id"])),
        lambda: activities.record_attachment(NetworkNode(network["id"], "lab-001")),
        lambda: activities.leave_tenant_network("lab-001"),
        lambda: activities.leave_network(NetworkNode(network["id"], "lab-001")),
        lambda: activities.remove_network_from_switch(on_leaf1),
    ]
    for step in steps:
        await step()
        first = len(sent)
        await step()
        assert sent[first:] == [], f"the second run changed the switch: {sent[first:]}"
    assert sent, "the steps did configure the switch the first time"
    leaf1 = await switch_state(fabric, "leaf1")
    assert network["l2vni"] not in {s.vni for s in leaf1.segments.values()}
    assert leaf1.access_ports["swp1"] == PROVISIONING["vlan"]
    async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
        url = f"/v1/networks/{network['id']}"
        assert (await api.delete(url)).status_code == 202

        async def deleted() -> bool:
            return (await api.get(url)).status_code == 404

        await eventually(deleted)
