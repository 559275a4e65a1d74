"""The Linux + FRR switch driver over SSH against a real leaf/spine fabric (lab/fabric).

Tenants A (VLAN 100, VNI 10100) and B (VLAN 200, VNI 10200) get a segment on both leaves and
a host on each: A1/B1 on leaf1's swp1/swp2, A2/B2 on leaf2's swp1/swp2, with the same
addresses in both tenants. Packets really cross the VXLAN/EVPN fabric; isolation is checked on
the hosts' packet counters (nothing else talks: the lab has no IPv6).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from drivers.switch.base import (
    AddSegment,
    ClearAccessPort,
    InvalidChange,
    RemoveSegment,
    Segment,
    SetAccessPort,
    Switch,
    SwitchAuthError,
    SwitchCommandFailed,
    SwitchUnreachable,
    Vrf,
)
from drivers.switch.linux_frr import linux_frr_switch
from drivers.switch.ssh import SshTarget, SshTransport
from lab.fabric import Fabric, FabricConfig, teardown
from lab.fabric.fabric import REPO
from lab.fabric.sshd import answers
from lab.fabric.system import alive, namespaces, root_links
from lab.fabric.topology import RUNTIME_ROOT

pytestmark = pytest.mark.asyncio(loop_scope="session")

PREFIX, MGMT = "mpft", "172.31.251.0/24"  # pinned: this module's namespaces and subnet
CLI_PREFIX, CLI_MGMT = "mpfc", "172.31.252.0/24"
A1, B1, A2, B2 = "h1-1", "h1-2", "h2-1", "h2-2"
HOSTS = (A1, B1, A2, B2)
ADDRESSES = {A1: "10.0.0.1/24", A2: "10.0.0.2/24", B1: "10.0.0.1/24", B2: "10.0.0.2/24"}
TENANT_A, TENANT_B = Segment(vlan=100, vni=10100), Segment(vlan=200, vni=10200)
PORTS = {"swp1": TENANT_A.vlan, "swp2": TENANT_B.vlan}


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    state = tmp_path_factory.mktemp("fabric")
    fabric = Fabric(FabricConfig(prefix=PREFIX, state_dir=state, mgmt_subnet=MGMT))
    fabric.up()
    try:
        for host, address in ADDRESSES.items():
            fabric.set_address(host, address)
        yield fabric
    finally:
        fabric.down()


def switch_of(fabric: Fabric, name: str, **target: Any) -> Switch:
    access = fabric.access(name)
    login = SshTarget(
        host=access.host,
        port=access.port,
        username=access.username,
        password=access.password,
        known_hosts=access.known_hosts,
        connect_timeout=5,
        command_timeout=20,
    )
    return linux_frr_switch(
        name,
        dataclasses.replace(login, **target),
        vtep=access.vtep,
        asn=access.asn,
        vtysh_socket_dir=access.vtysh_socket_dir,
        access_ports=access.access_ports,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def leaves(fabric: Fabric) -> AsyncIterator[dict[str, Switch]]:
    switches = {name: switch_of(fabric, name) for name in ("leaf1", "leaf2")}
    yield switches
    for switch in switches.values():
        await switch.close()


async def wire_tenants(leaves: dict[str, Switch]) -> None:
    """Both tenants' segments and ports on both leaves (a no-op when already there)."""
    for switch in leaves.values():
        await switch.ensure_segment(TENANT_A)
        await switch.ensure_segment(TENANT_B)
        for port, vlan in PORTS.items():
            await switch.set_access_port(port, vlan)


async def ping(fabric: Fabric, host: str, dst: str, **kwargs: Any) -> int:
    return await asyncio.to_thread(fabric.ping, host, dst, **kwargs)


async def reachable(fabric: Fabric, host: str, dst: str, timeout: float = 10.0) -> None:
    await asyncio.to_thread(fabric.wait_reachable, host, dst, timeout)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {timeout}s"
        await asyncio.sleep(0.05)


def links_of(fabric: Fabric, switch: str) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in fabric.switch_links(switch)}


def remote_vteps(fabric: Fabric, switch: str, vni: int) -> list[str]:
    vnis = fabric.vtysh_json(switch, "show evpn vni json")
    return list(vnis.get(str(vni), {}).get("remoteVteps", []))


def imet_origins(fabric: Fabric, switch: str, vni: int) -> set[str]:
    """VTEPs whose EVPN type-3 route for `vni` (RT asn:vni) this switch holds."""
    routes = fabric.vtysh_json(switch, "show bgp l2vpn evpn route type multicast json")
    found = set()
    for rd in routes.values():
        if not isinstance(rd, dict):
            continue
        for prefix in rd.values():
            if not isinstance(prefix, dict):
                continue
            for paths in prefix.get("paths", []):
                for path in paths:
                    if f"RT:65000:{vni}" in path.get("extendedCommunity", {}).get("string", ""):
                        found.add(path["ip"])
    return found


async def test_tenants_reach_their_own_hosts_only(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    await wire_tenants(leaves)
    await reachable(fabric, A1, "10.0.0.2")
    await reachable(fabric, B1, "10.0.0.2")
    # The same address answers from the tenant's own host on the other leaf.
    assert fabric.neighbor_mac(A1, "10.0.0.2") == fabric.mac(A2)
    assert fabric.neighbor_mac(B1, "10.0.0.2") == fabric.mac(B2)

    for pinger, peer, others in ((A1, A2, (B1, B2)), (B1, B2, (A1, A2))):
        for host in HOSTS:  # an ARP broadcast first; no neighbor probe pending anywhere
            fabric.flush_neighbors(host)
        before = {host: fabric.counters(host) for host in HOSTS}
        assert await ping(fabric, pinger, "10.0.0.2", count=5, interval=0.05, timeout=3) == 5
        after = {host: fabric.counters(host) for host in HOSTS}
        # The peer saw the ARP request and five echo requests ...
        assert after[peer]["rx"] - before[peer]["rx"] >= 6
        assert after[peer]["tx"] - before[peer]["tx"] >= 6
        # ... the other tenant's hosts, with the same addresses, not a single packet.
        for host in others:
            assert after[host] == before[host], f"{host} saw traffic of {pinger}'s tenant"


async def test_clear_access_port_cuts_the_host_off_and_set_restores_it(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    await wire_tenants(leaves)
    await reachable(fabric, A1, "10.0.0.2")
    leaf2 = leaves["leaf2"]

    assert await leaf2.clear_access_port("swp1") == [ClearAccessPort("swp1", TENANT_A.vlan)]
    assert "swp1" not in (await leaf2.state()).access_ports
    fabric.flush_neighbors(A1)
    assert await ping(fabric, A1, "10.0.0.2", count=3, timeout=0.5) == 0
    # tenant B's port on that leaf is untouched
    assert await ping(fabric, B1, "10.0.0.2", timeout=3) == 1
    assert await leaf2.clear_access_port("swp1") == []

    assert await leaf2.set_access_port("swp1", TENANT_A.vlan) == [
        SetAccessPort("swp1", TENANT_A.vlan, previous=None)
    ]
    await reachable(fabric, A1, "10.0.0.2")
    assert fabric.neighbor_mac(A1, "10.0.0.2") == fabric.mac(A2)


async def test_remove_segment_leaves_nothing_behind(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    await wire_tenants(leaves)
    await reachable(fabric, B1, "10.0.0.2")
    leaf1, vtep = leaves["leaf1"], fabric.switch("leaf1").loopback
    # What the removal must withdraw is there to begin with.
    assert vtep in remote_vteps(fabric, "leaf2", TENANT_B.vni)
    assert vtep in imet_origins(fabric, "spine1", TENANT_B.vni)

    assert await leaf1.remove_segment(TENANT_B.vlan) == [
        ClearAccessPort("swp2", TENANT_B.vlan),
        RemoveSegment(TENANT_B),
    ]

    state = await leaf1.state()  # over SSH, through the driver
    assert TENANT_B.vlan not in state.segments and "swp2" not in state.access_ports
    assert state.segments == {TENANT_A.vlan: TENANT_A} and state.access_ports == {"swp1": 100}
    links = links_of(fabric, "leaf1")  # and raw, out of band
    assert "br200" not in links and "vni10200" not in links
    assert not any(
        (link.get("linkinfo") or {}).get("info_data", {}).get("id") == TENANT_B.vni
        for link in links.values()
    )
    assert "master" not in links["swp2"] and "UP" not in links["swp2"]["flags"]
    # FRR no longer has the VNI, and its type-3 route is withdrawn from the fabric.
    assert str(TENANT_B.vni) not in fabric.vtysh_json("leaf1", "show evpn vni json")
    await eventually(lambda: vtep not in remote_vteps(fabric, "leaf2", TENANT_B.vni))
    await eventually(lambda: vtep not in imet_origins(fabric, "spine1", TENANT_B.vni))
    assert str(TENANT_A.vni) in fabric.vtysh_json("leaf1", "show evpn vni json")

    fabric.flush_neighbors(B1)
    assert await ping(fabric, B1, "10.0.0.2", count=2, timeout=0.5) == 0
    assert await ping(fabric, A1, "10.0.0.2", timeout=3) == 1
    assert await leaf1.remove_segment(TENANT_B.vlan) == []


async def test_every_operation_twice_changes_nothing_the_second_time(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    await wire_tenants(leaves)
    leaf1 = leaves["leaf1"]
    scratch = Segment(vlan=300, vni=10300)
    operations: list[tuple[str, Callable[[], Any], bool]] = [
        ("ensure_segment", lambda: leaf1.ensure_segment(scratch), True),
        ("set_access_port (move)", lambda: leaf1.set_access_port("swp2", 300), True),
        ("clear_access_port", lambda: leaf1.clear_access_port("swp2"), True),
        ("set_access_port", lambda: leaf1.set_access_port("swp2", 200), True),
        ("remove_segment", lambda: leaf1.remove_segment(300), True),
        # No VRF can be made on this kernel (see test_add_vrf_...); removing one is a no-op.
        ("remove_vrf", lambda: leaf1.remove_vrf("tenA"), False),
    ]
    for name, operation, changes_first in operations:
        first = await operation()
        state = await leaf1.state()
        assert bool(first) is changes_first, (name, first)
        assert await operation() == [], name
        assert await leaf1.state() == state, name
    assert (await leaf1.state()).access_ports == PORTS


async def test_a_switch_failing_mid_change_is_rolled_back(
    fabric: Fabric, leaves: dict[str, Switch], caplog: pytest.LogCaptureFixture
) -> None:
    leaf1, segment = leaves["leaf1"], Segment(vlan=300, vni=10300)
    await leaf1.remove_segment(300)
    before = await leaf1.state()
    # A real fault: the name the VXLAN device needs (AddSegment's second command) is taken.
    fabric.switch_exec("leaf1", "ip", "link", "add", "vni10300", "type", "bridge")
    try:
        with pytest.raises(SwitchCommandFailed) as failure:
            await leaf1.ensure_segment(segment)
        assert "`ip link add vni10300 type vxlan" in str(failure.value)
        assert "File exists" in str(failure.value)
        assert failure.value.retryable
        assert "rolling back 1 change" in caplog.text
        # The bridge the first command made is gone again; the foreign device is untouched.
        assert await leaf1.state() == before
        links = links_of(fabric, "leaf1")
        assert "br300" not in links
        assert links["vni10300"]["linkinfo"]["info_kind"] == "bridge"
    finally:
        fabric.switch_exec("leaf1", "ip", "link", "del", "vni10300")
    assert await leaf1.ensure_segment(segment) == [AddSegment(segment)]
    assert (await leaf1.state()).segments[300] == segment
    assert links_of(fabric, "leaf1")["vni10300"]["linkinfo"]["info_kind"] == "vxlan"
    assert await leaf1.ensure_segment(segment) == []
    await leaf1.remove_segment(300)


async def test_add_vrf_fails_cleanly_on_a_kernel_without_vrf(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    leaf1, vrf = leaves["leaf1"], Vrf(name="tenA", table=1001, l3vni=104001, l3vlan=4001)
    before, links_before = await leaf1.state(), set(links_of(fabric, "leaf1"))
    with pytest.raises(SwitchCommandFailed) as failure:
        await leaf1.ensure_vrf(vrf)
    # FRR took its part (the first command); the kernel refused the VRF device (the second).
    assert "`ip link add tenA type vrf table 1001` exited 2" in str(failure.value)
    assert "Unknown device type" in str(failure.value)
    assert failure.value.retryable is False  # no retry gives this kernel VRFs
    assert await leaf1.state() == before
    assert set(links_of(fabric, "leaf1")) == links_before
    running = fabric.vtysh("leaf1", "show running-config")
    assert "vrf tenA" not in running and "router bgp 65000 vrf tenA" not in running
    assert fabric.vtysh_json("leaf1", "show vrf vni json") == {"vrfs": []}


async def test_an_uplink_is_no_access_port(fabric: Fabric, leaves: dict[str, Switch]) -> None:
    await wire_tenants(leaves)
    with pytest.raises(InvalidChange):
        await leaves["leaf1"].set_access_port("uplink1", TENANT_A.vlan)
    assert "master" not in links_of(fabric, "leaf1")["uplink1"]


async def test_session_is_reused_and_recovers_after_a_drop(
    fabric: Fabric, leaves: dict[str, Switch]
) -> None:
    leaf1 = leaves["leaf1"]
    transport = leaf1.transport
    assert isinstance(transport, SshTransport)
    await leaf1.state()
    opened = transport.connects
    await leaf1.state()
    assert transport.connects == opened  # one session for all commands

    assert fabric.drop_ssh_sessions("leaf1") >= 1
    started = time.monotonic()
    state = await leaf1.state()
    assert time.monotonic() - started < 5
    assert transport.connects == opened + 1
    assert state == await leaf1.state()

    # A refused command keeps the session (and names the command and the switch's answer).
    with pytest.raises(SwitchCommandFailed) as failure:
        await transport.configure(["ip link set dev nosuch up"])
    assert 'Cannot find device "nosuch"' in str(failure.value)
    assert failure.value.retryable
    await transport.configure(["true", "ip -br link show dev lo"])
    assert transport.connects == opened + 1


async def test_wrong_password_is_an_auth_error_and_never_logged(
    fabric: Fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = f"wrong-{secrets.token_hex(8)}"
    switch = switch_of(fabric, "leaf1", password=password)
    try:
        with pytest.raises(SwitchAuthError) as failure:
            await switch.state()
    finally:
        await switch.close()
    assert failure.value.retryable is False
    assert "paramiko" in caplog.text  # the SSH library did log at debug level ...
    for text in (caplog.text, str(failure.value), repr(switch.transport.target)):  # type: ignore[attr-defined]
        assert password not in text  # ... never the password
    assert fabric.access("leaf1").password not in caplog.text


async def test_key_login_and_pinned_host_keys(fabric: Fabric, tmp_path: Path) -> None:
    access = fabric.access("leaf2")
    by_key = switch_of(fabric, "leaf2", password=None, key_file=access.key_file)
    by_password = switch_of(fabric, "leaf2")
    try:
        assert await by_key.state() == await by_password.state()
    finally:
        await by_key.close()
        await by_password.close()
    # leaf1's host key listed for leaf2's address: a host key mismatch.
    leaf1_address = fabric.switch("leaf1").mgmt_address
    known = await asyncio.to_thread(Path(access.known_hosts).read_text)
    leaf1_key = next(
        line.split(" ", 1)[1] for line in known.splitlines() if line.startswith(f"{leaf1_address} ")
    )
    wrong, empty = tmp_path / "wrong_known_hosts", tmp_path / "empty_known_hosts"
    wrong.write_text(f"{access.host} {leaf1_key}\n")
    empty.write_text("")
    for known_hosts, reason in ((wrong, "does not match"), (empty, "not in known_hosts")):
        switch = switch_of(fabric, "leaf2", known_hosts=str(known_hosts))
        with pytest.raises(SwitchAuthError, match=reason) as failure:
            await switch.state()
        assert failure.value.retryable is False
        await switch.close()


async def test_unreachable_switches(fabric: Fabric) -> None:
    refused = switch_of(fabric, "leaf1", port=2222)  # nothing listens there
    nobody = str(ipaddress.ip_network(MGMT)[250])  # in the management subnet, no such host
    silent = switch_of(fabric, "leaf1", host=nobody, connect_timeout=1)
    for switch in (refused, silent):
        started = time.monotonic()
        with pytest.raises(SwitchUnreachable) as failure:
            await switch.state()
        assert failure.value.retryable
        assert time.monotonic() - started < 5
        await switch.close()


async def test_cli_up_then_down_after_a_crash(tmp_path: Path) -> None:
    """`python -m lab.fabric up` leaves a working fabric behind; with its state dir lost (a
    crash), `down` still stops every process and removes every namespace and link."""
    state = tmp_path / "fabric"
    common = ["--prefix", CLI_PREFIX, "--state-dir", str(state)]
    shape = ["--leaves", "1", "--hosts-per-leaf", "1", "--mgmt-subnet", CLI_MGMT]
    try:
        up = await cli("up", *common, *shape)
        assert up.returncode == 0, up.stderr
        summary = json.loads(up.stdout)
        assert summary["switches"] == {"spine1": "172.31.252.11", "leaf1": "172.31.252.101"}
        assert summary["hosts"] == {"h1-1": "leaf1:swp1"}
        assert summary["started_in"] < 10
        assert all(answers(address) for address in summary["switches"].values())
        recorded = json.loads((state / "fabric.json").read_text())["pids"]
        pids = [pid for switch in recorded.values() for pid in switch]
        assert len(pids) == 6 and all(alive(p) for p in pids)  # zebra, bgpd, sshd per switch
        assert namespaces(CLI_PREFIX) == [f"{CLI_PREFIX}-{n}" for n in ("h1-1", "leaf1", "spine1")]

        for path in state.rglob("*"):  # the crash took the state with it
            if path.is_file():
                path.unlink()
        down = await cli("down", *common)
        assert down.returncode == 0, down.stderr
        assert not any(alive(p) for p in pids)
        assert namespaces(CLI_PREFIX) == []
        assert root_links(CLI_PREFIX) == []
        assert not (RUNTIME_ROOT / CLI_PREFIX).exists()
        assert not any(answers(address) for address in summary["switches"].values())
    finally:
        teardown(CLI_PREFIX, state)


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lab.fabric", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
