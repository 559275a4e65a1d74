"""The Linux + FRR driver's routed path (VRFs, SVIs, L3 VNIs) on UML leaves: real kernels with
VRF and VXLAN (lab/fabric/uml.py), managed over SSH as the namespace leaves are.

Tenants A and B each get a VRF on both leaves and the same subnet 10.0.0.0/24 (VLAN 100 / 200,
gateway 10.0.0.1 on both leaves with one anycast MAC): hosts .11 on leaf1 (A1 h1-1, B1 h1-2)
and .12 on leaf2 (A2 h2-1, B2 h2-2). Each tenant also has 10.0.1.0/24 on one leaf only, with a
host .13: A's on leaf2 (A3 h2-3, VLAN 110), B's on leaf1 (B3 h1-3, VLAN 210).

Proven, on packets and on what the switches run:
- every host reaches its gateway, and its tenant's host on the other leaf (bridged over the
  tenant's L2 VNI: the answer comes from that host's MAC);
- A1 (leaf1) reaches 10.0.1.13 on leaf2 and B2 (leaf2) reaches 10.0.1.13 on leaf1, routed:
  before any packet, the VRF of the pinging leaf holds 10.0.1.0/24 from the other leaf's EVPN
  type-5 route (in BGP, in FRR's VRF table and in the kernel's), next hop the other VTEP on
  the L3 VNI's bridge (symmetric IRB); on leaf1 the same subnet is local in tenant B, whose
  host .13 sees nothing of A1's ping;
- no packet of one tenant reaches the other tenant's hosts (their NIC counters do not move;
  nothing else talks: no IPv6 anywhere);
- removal leaves no VRF, VNI, bridge, SVI or route on either switch: read back through the
  driver's state() and raw (`ip -d -j link`, the VRF tables, FRR's VNIs, VRFs and running
  configuration), and the fabric withdraws every EVPN route.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from drivers.switch.base import (
    AddSegment,
    AddVrf,
    ClearAccessPort,
    RemoveSegment,
    RemoveVrf,
    Segment,
    SetAccessPort,
    Switch,
    SwitchState,
    Vrf,
)
from drivers.switch.linux_frr import linux_frr_switch
from drivers.switch.ssh import SshTarget, SshTransport
from lab.fabric import Fabric, FabricConfig, FabricError, teardown
from lab.fabric.fabric import STATE_FILE
from lab.fabric.system import alive, namespaces, owned_pid, root_links
from lab.fabric.topology import RUNTIME_ROOT

pytestmark = pytest.mark.asyncio(loop_scope="session")

PREFIX, MGMT = "mpfu", "172.31.254.0/24"  # pinned: this module's namespaces and subnet
GATEWAY_MAC = "02:6d:70:00:00:01"  # the anycast gateway's, on every leaf
A1, B1, B3, A2, B2, A3 = "h1-1", "h1-2", "h1-3", "h2-1", "h2-2", "h2-3"
HOSTS = (A1, B1, B3, A2, B2, A3)
TENANT = {A1: "A", A2: "A", A3: "A", B1: "B", B2: "B", B3: "B"}
ADDRESSES = {
    A1: "10.0.0.11/24",
    B1: "10.0.0.11/24",
    A2: "10.0.0.12/24",
    B2: "10.0.0.12/24",
    A3: "10.0.1.13/24",
    B3: "10.0.1.13/24",
}
VRF_A = Vrf(name="vrfA", table=1001, l3vni=104001, l3vlan=4001)
VRF_B = Vrf(name="vrfB", table=1002, l3vni=104002, l3vlan=4002)
SUBNET_A = Segment(vlan=100, vni=10100, vrf="vrfA", gateway="10.0.0.1/24")
SUBNET_B = Segment(vlan=200, vni=10200, vrf="vrfB", gateway="10.0.0.1/24")
SECOND_A = Segment(vlan=110, vni=10110, vrf="vrfA", gateway="10.0.1.1/24")
SECOND_B = Segment(vlan=210, vni=10210, vrf="vrfB", gateway="10.0.1.1/24")
# What each leaf runs once both tenants are wired.
WANTED = {
    "leaf1": SwitchState(
        vrfs={"vrfA": VRF_A, "vrfB": VRF_B},
        segments={100: SUBNET_A, 200: SUBNET_B, 210: SECOND_B},
        access_ports={"swp1": 100, "swp2": 200, "swp3": 210},
    ),
    "leaf2": SwitchState(
        vrfs={"vrfA": VRF_A, "vrfB": VRF_B},
        segments={100: SUBNET_A, 200: SUBNET_B, 110: SECOND_A},
        access_ports={"swp1": 100, "swp2": 200, "swp3": 110},
    ),
}
PORTS = ("swp1", "swp2", "swp3")


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    config = FabricConfig(
        prefix=PREFIX,
        state_dir=tmp_path_factory.mktemp("fabric"),
        hosts_per_leaf=3,
        mgmt_subnet=MGMT,
        leaf_kind="uml",
    )
    fabric = Fabric(config)
    fabric.up()  # a kernel that cannot boot fails every test here, with its console's words
    try:
        for host, address in ADDRESSES.items():
            fabric.set_address(host, address)
            gateway = address.rsplit(".", 1)[0] + ".1"
            fabric.host_exec(host, "ip", "route", "add", "default", "via", gateway)
        yield fabric
    finally:
        fabric.down()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def leaves(fabric: Fabric) -> AsyncIterator[dict[str, Switch]]:
    switches = {}
    for name in ("leaf1", "leaf2"):
        access = fabric.access(name)
        target = SshTarget(
            host=access.host,
            port=access.port,
            username=access.username,
            password=access.password,
            known_hosts=access.known_hosts,
            connect_timeout=10,
            command_timeout=30,
        )
        switches[name] = linux_frr_switch(
            name,
            target,
            vtep=access.vtep,
            asn=access.asn,
            vtysh_socket_dir=access.vtysh_socket_dir,
            access_ports=access.access_ports,
            gateway_mac=GATEWAY_MAC,
        )
    yield switches
    for switch in switches.values():
        await switch.close()


async def wire(switch: Switch) -> list[Any]:
    """The leaf's VRFs, segments and ports (WANTED), through the driver; the changes made."""
    wanted = WANTED[switch.name]
    changes: list[Any] = []
    for vrf in wanted.vrfs.values():
        changes += await switch.ensure_vrf(vrf)
    for segment in wanted.segments.values():
        changes += await switch.ensure_segment(segment)
    for port, vlan in wanted.access_ports.items():
        changes += await switch.set_access_port(port, vlan)
    return changes


async def both(leaves: dict[str, Switch], operation: Callable[[Switch], Any]) -> list[Any]:
    """The operation on both leaves at once (each is its own kernel, on its own CPU)."""
    return list(await asyncio.gather(*(operation(s) for s in leaves.values())))


async def ping(fabric: Fabric, host: str, dst: str, **kwargs: Any) -> int:
    return await asyncio.to_thread(fabric.ping, host, dst, **kwargs)


async def reachable(fabric: Fabric, host: str, dst: str) -> None:
    await asyncio.to_thread(fabric.wait_reachable, host, dst, 10.0)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"{check} still false after {timeout}s"
        await asyncio.sleep(0.1)


def type5_from(fabric: Fabric, leaf: str, prefix: str, l3vni: int) -> set[str]:
    """Next hops of the EVPN type-5 routes for `prefix` with RT asn:l3vni that `leaf` holds."""
    routes = fabric.vtysh_json(leaf, "show bgp l2vpn evpn route type prefix json")
    network, length = prefix.split("/")
    found = set()
    for rd in routes.values():
        entry = rd.get(f"[5]:[0]:[{length}]:[{network}]") if isinstance(rd, dict) else None
        if entry is not None:
            for paths in entry.get("paths", []):
                for path in paths:
                    if f"RT:65000:{l3vni}" in path.get("extendedCommunity", {}).get("string", ""):
                        found.update(hop["ip"] for hop in path.get("nexthops", []))
    return found


def vrf_route(fabric: Fabric, leaf: str, vrf: str, prefix: str) -> list[dict[str, Any]]:
    """FRR's selected BGP route for `prefix` in `vrf`, its next hops."""
    table = fabric.vtysh_json(leaf, f"show ip route vrf {vrf} {prefix} json")
    return [
        hop
        for route in table.get(prefix, [])
        if route.get("protocol") == "bgp" and route.get("selected")
        for hop in route.get("nexthops", [])
    ]


def links(fabric: Fabric, leaf: str) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in fabric.switch_links(leaf)}


async def test_a_uml_leaf_is_a_kernel_of_its_own(fabric: Fabric) -> None:
    assert fabric.started_in is not None and fabric.started_in < 30
    for leaf in ("leaf1", "leaf2"):
        release = fabric.switch_exec(leaf, "uname", "-r").strip()
        assert release != os.uname().release  # not the host's kernel
        assert fabric.switch_exec(leaf, "hostname").strip() == leaf
        assert "vrf" in fabric.switch_exec(leaf, "cat", "/proc/modules")
        kernel, kick = fabric.pids()[leaf]  # what runs in the kernel is its own
        assert alive(kernel) and alive(kick)
        assert owned_pid(kernel, [f"umid={leaf} uml_dir={fabric.switch(leaf).runtime_dir}"])
    # Access ports start down and unbridged, as on a namespace leaf.
    assert all("UP" not in links(fabric, "leaf1")[port]["flags"] for port in PORTS)


async def test_routed_tenants_share_a_subnet_and_reach_across_leaves(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    made = dict(zip(leaves, await both(leaves, wire), strict=True))
    assert made["leaf1"][:2] == [AddVrf(VRF_A), AddVrf(VRF_B)]
    assert AddSegment(SECOND_B) in made["leaf1"] and AddSegment(SECOND_A) in made["leaf2"]
    assert SetAccessPort("swp3", 110) in made["leaf2"]
    # Read back over SSH through the driver; a second pass changes nothing.
    for name, state in zip(leaves, await both(leaves, lambda s: s.state()), strict=True):
        assert state == WANTED[name], name
    assert await both(leaves, wire) == [[], []]

    # Before any packet: each leaf routes the other's second subnet into the L3 VNI.
    vteps = {leaf: fabric.switch(leaf).loopback for leaf in leaves}
    for leaf, other, vrf in (("leaf1", "leaf2", VRF_A), ("leaf2", "leaf1", VRF_B)):
        await eventually(
            lambda leaf=leaf, v=vrf.name: bool(vrf_route(fabric, leaf, v, "10.0.1.0/24"))
        )
        assert vteps[other] in type5_from(fabric, leaf, "10.0.1.0/24", vrf.l3vni)
        hops = vrf_route(fabric, leaf, vrf.name, "10.0.1.0/24")
        assert [(h["ip"], h["interfaceName"]) for h in hops] == [(vteps[other], f"br{vrf.l3vlan}")]
        kernel = fabric.switch_exec(leaf, "ip", "route", "show", "vrf", vrf.name, "10.0.1.0/24")
        assert f"via {vteps[other]} dev br{vrf.l3vlan}" in kernel and "onlink" in kernel

    for host in HOSTS:
        gateway = ADDRESSES[host].rsplit(".", 1)[0] + ".1"
        await reachable(fabric, host, gateway)
        assert fabric.neighbor_mac(host, gateway) == GATEWAY_MAC  # the anycast gateway
    for pinger, peer in ((A1, A2), (B1, B2)):  # the same address in both tenants
        await reachable(fabric, pinger, "10.0.0.12")
        assert fabric.neighbor_mac(pinger, "10.0.0.12") == fabric.mac(peer)
    await reachable(fabric, A1, "10.0.1.13")  # leaf1 -> leaf2 in vrfA
    await reachable(fabric, B2, "10.0.1.13")  # leaf2 -> leaf1 in vrfB


@pytest.mark.parametrize(
    ("pinger", "dst", "target"),
    [(A1, "10.0.0.12", A2), (B1, "10.0.0.12", B2), (A1, "10.0.1.13", A3), (B2, "10.0.1.13", B3)],
)
async def test_no_packet_of_a_tenant_reaches_the_other(
    fabric: Fabric, leaves: dict[str, Switch], pinger: str, dst: str, target: str
) -> None:
    await both(leaves, wire)
    await reachable(fabric, pinger, dst)
    # ARP broadcasts first, and no neighbor probe pending anywhere: a neighbor used in an
    # earlier ping is re-validated ~5 s later by unicast ARP, from a host or from a gateway.
    for host in HOSTS:
        fabric.flush_neighbors(host)
    for leaf in leaves:  # the gateways' (the SVIs'), not the fabric's own
        svis = " ".join(f"br{vlan}" for vlan in WANTED[leaf].segments)
        fabric.switch_exec(leaf, "sh", "-c", f"for b in {svis}; do ip neigh flush dev $b; done")
    before = {host: fabric.counters(host) for host in HOSTS}
    assert await ping(fabric, pinger, dst, count=5, interval=0.05, timeout=3) == 5
    after = {host: fabric.counters(host) for host in HOSTS}
    assert after[target]["rx"] - before[target]["rx"] >= 5
    assert after[target]["tx"] - before[target]["tx"] >= 5
    for host in HOSTS:
        if TENANT[host] != TENANT[pinger]:
            assert after[host] == before[host], f"{host} saw traffic of {pinger}'s tenant"


async def test_removal_leaves_nothing_behind(fabric: Fabric, leaves: dict[str, Switch]) -> None:
    await both(leaves, wire)

    async def remove(switch: Switch) -> list[Any]:
        wanted, changes = WANTED[switch.name], []
        for vlan in wanted.segments:
            changes += await switch.remove_segment(vlan)
        for name in wanted.vrfs:
            changes += await switch.remove_vrf(name)
        return changes

    removed = dict(zip(leaves, await both(leaves, remove), strict=True))
    assert removed["leaf2"] == [
        ClearAccessPort("swp1", 100),
        RemoveSegment(SUBNET_A),
        ClearAccessPort("swp2", 200),
        RemoveSegment(SUBNET_B),
        ClearAccessPort("swp3", 110),
        RemoveSegment(SECOND_A),
        RemoveVrf(VRF_A),
        RemoveVrf(VRF_B),
    ]
    assert await both(leaves, lambda s: s.state()) == [SwitchState(), SwitchState()]
    assert await both(leaves, remove) == [[], []]

    for leaf in leaves:
        found = links(fabric, leaf)
        assert sorted(found) == sorted(["lo", "eth0", "uplink1", *PORTS]), leaf
        kinds = {(link.get("linkinfo") or {}).get("info_kind") for link in found.values()}
        assert not kinds & {"vrf", "bridge", "vxlan"}, leaf
        for port in PORTS:
            assert "master" not in found[port] and "UP" not in found[port]["flags"]
        for vrf in (VRF_A, VRF_B):
            table = fabric.switch_exec(leaf, "ip", "-j", "route", "show", "table", str(vrf.table))
            assert table.strip() in ("", "[]"), (leaf, vrf.table, table)
            with pytest.raises(FabricError, match="Invalid VRF"):
                fabric.switch_exec(leaf, "ip", "route", "show", "vrf", vrf.name)
        assert fabric.vtysh_json(leaf, "show evpn vni json") == {}
        assert fabric.vtysh_json(leaf, "show vrf vni json") == {"vrfs": []}
        assert fabric.vtysh(leaf, "show vrf").strip() == ""
        running = fabric.vtysh(leaf, "show running-config").splitlines()
        assert not [line for line in running if line.startswith(("vrf ", "router bgp 65000 vrf"))]
        assert "10.0." not in fabric.switch_exec(leaf, "ip", "route", "show", "table", "all")
    # The fabric forgets every tenant route: no type-2, -3 or -5 route left on the spine.
    await eventually(
        lambda: fabric.vtysh_json("spine1", "show bgp l2vpn evpn route json")["numPrefix"] == 0
    )
    fabric.flush_neighbors(A1)
    assert await ping(fabric, A1, "10.0.0.1", count=2, timeout=0.5) == 0


async def test_dropped_ssh_sessions_are_replaced(fabric: Fabric, leaves: dict[str, Switch]) -> None:
    leaf1 = leaves["leaf1"]
    transport = leaf1.transport
    assert isinstance(transport, SshTransport)
    state = await leaf1.state()
    opened = transport.connects
    # The driver's session goes; the lab's own login that drops it stays (and works on).
    assert await asyncio.to_thread(fabric.drop_ssh_sessions, "leaf1") == 1
    assert await leaf1.state() == state
    assert transport.connects == opened + 1
    assert fabric.switch_exec("leaf1", "hostname").strip() == "leaf1"


def lose_state(fabric: Fabric) -> None:
    (fabric.state_dir / STATE_FILE).unlink()
    for leaf in ("leaf1", "leaf2"):
        for pid_file in Path(fabric.switch(leaf).runtime_dir).glob("*.pid"):
            pid_file.unlink()


async def test_teardown_after_a_crash_stops_the_kernels(fabric: Fabric) -> None:
    """With the state and the pid files lost, teardown still finds every kernel and its
    wake-up source (they run in the leaves' namespaces) and removes all the lab made."""
    pids = [pid for found in fabric.pids().values() for pid in found]
    assert len(pids) == 2 + 2 + 3  # kernel and kick per UML leaf; the spine's zebra, bgpd, sshd
    await asyncio.to_thread(lose_state, fabric)
    await asyncio.to_thread(teardown, PREFIX)
    assert not any(alive(pid) for pid in pids)
    assert namespaces(PREFIX) == [] and root_links(PREFIX) == []
    assert not (RUNTIME_ROOT / PREFIX).exists()
