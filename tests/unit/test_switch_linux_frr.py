"""The Linux + FRR dialect on recorded outputs, its rendering, and the plan checks it relies on.

The switch runs of the integration tests prove the commands on real switches (L2 segments:
tests/integration/test_fabric_linux.py; VRFs and SVIs on UML leaves, kernels with VRF:
tests/integration/test_fabric_uml.py); these pin down the parsing and the exact command shapes.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from drivers.switch.base import (
    AddSegment,
    AddVrf,
    ClearAccessPort,
    InvalidChange,
    RemoveSegment,
    RemoveVrf,
    Segment,
    SetAccessPort,
    SwitchState,
    Vrf,
    plan_segment,
    plan_vrf,
)
from drivers.switch.linux_frr import LINKS, LinuxFrrDialect
from drivers.switch.ssh import MAX_SHELL_LINE, _batches, _shell_line
from lab.fabric import uml
from lab.fabric.topology import FabricConfig, FabricError, plan

VTYSH_DIR = "/run/metalplane-fabric/lab/leaf1"

# `ip -d -j addr show` on a lab leaf with tenants A (VLAN 100) and B (VLAN 200) and a bridge
# named vni10300 created out of band; recorded, trimmed to the fields parse_state reads.
LEAF_LINKS = """[
{"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"},{"family":"inet","local":"10.255.1.1","prefixlen":32,"scope":"global"}]},
{"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"172.31.249.101","prefixlen":24,"scope":"global"}]},
{"ifname":"uplink1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.254.1.1","prefixlen":31,"scope":"global"}]},
{"ifname":"swp1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"master":"br100","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"},"addr_info":[]},
{"ifname":"swp2","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"master":"br200","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"},"addr_info":[]},
{"ifname":"br100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0,"vlan_filtering":0}},"addr_info":[]},
{"ifname":"vni10100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"master":"br100","linkinfo":{"info_kind":"vxlan","info_data":{"id":10100,"local":"10.255.1.1","port":4789,"learning":false},"info_slave_kind":"bridge"},"addr_info":[]},
{"ifname":"br200","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0,"vlan_filtering":0}},"addr_info":[]},
{"ifname":"vni10200","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"master":"br200","linkinfo":{"info_kind":"vxlan","info_data":{"id":10200,"local":"10.255.1.1","port":4789,"learning":false},"info_slave_kind":"bridge"},"addr_info":[]},
{"ifname":"vni10300","flags":["BROADCAST","MULTICAST"],"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0,"vlan_filtering":0}},"addr_info":[]}
]"""
# FRR 8.4 `show vrf vni json` with no VRF (recorded).
NO_VRFS = '{\n  "vrfs":[\n  ]\n}\n'

# A routed tenant as the dialect builds it on a kernel with VRFs, trimmed to the fields
# parse_state reads, in the shape a UML leaf of the lab prints (vrf: info_data.table; the
# FRR answer as FRR 8.4 prints it for a VRF with its L3 VNI).
ROUTED_LINKS = [
    {
        "ifname": "tenA",
        "flags": ["UP"],
        "linkinfo": {"info_kind": "vrf", "info_data": {"table": 1001}},
    },
    {
        "ifname": "br4001",
        "master": "tenA",
        "linkinfo": {"info_kind": "bridge", "info_slave_kind": "vrf"},
    },
    {
        "ifname": "vni104001",
        "master": "br4001",
        "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 104001, "local": "10.255.1.1"}},
    },
    {
        "ifname": "br300",
        "master": "tenA",
        "linkinfo": {"info_kind": "bridge", "info_slave_kind": "vrf"},
        "addr_info": [
            {"family": "inet", "local": "10.1.0.1", "prefixlen": 24, "scope": "global"},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
        ],
    },
    {
        "ifname": "vni10300",
        "master": "br300",
        "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 10300}},
    },
    {
        "ifname": "swp3",
        "master": "br300",
        "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"},
    },
]
ROUTED_VRFS = json.dumps(
    {
        "vrfs": [
            {
                "vrf": "tenA",
                "vni": 104001,
                "vxlanIntf": "vni104001",
                "sviIntf": "br4001",
                "state": "Up",
                "routerMac": "None",
            }
        ]
    }
)
TENANT_A = Vrf(name="tenA", table=1001, l3vni=104001, l3vlan=4001)


def dialect(**kwargs: Any) -> LinuxFrrDialect:
    return LinuxFrrDialect(vtep="10.255.1.1", asn=65000, vtysh_socket_dir=VTYSH_DIR, **kwargs)


def parse(d: LinuxFrrDialect, links: str, vrfs: str) -> SwitchState:
    return d.parse_state({LINKS: links, d.vrf_vnis: vrfs})


def test_state_commands_read_links_and_frr_l3vnis() -> None:
    d = dialect()
    assert d.state_commands() == [
        "ip -d -j addr show",
        f"vtysh -H /dev/null --vty_socket {VTYSH_DIR} -c 'show vrf vni json'",
    ]


def test_parse_recorded_leaf() -> None:
    state = parse(dialect(), LEAF_LINKS, NO_VRFS)
    assert state == SwitchState(
        vrfs={},
        segments={100: Segment(100, 10100), 200: Segment(200, 10200)},
        access_ports={"swp1": 100, "swp2": 200},
    )


def test_parse_ignores_foreign_and_unmanaged_links() -> None:
    links = json.loads(LEAF_LINKS)
    links += [
        # a VXLAN device not named after its VNI, in a bridge of ours
        {
            "ifname": "vx7",
            "master": "br700",
            "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 700}},
        },
        {"ifname": "br700", "linkinfo": {"info_kind": "bridge"}},
        # a VXLAN device of ours in a bridge not named like ours
        {
            "ifname": "vni800",
            "master": "tenants",
            "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 800}},
        },
        {"ifname": "tenants", "linkinfo": {"info_kind": "bridge"}},
    ]
    for link in links:
        if link["ifname"] == "uplink1":
            link["master"] = "br100"  # an uplink in a tenant bridge is not an access port
    state = parse(dialect(), json.dumps(links), NO_VRFS)
    assert set(state.segments) == {100, 200}
    assert state.access_ports == {"swp1": 100, "swp2": 200}


def test_managed_ports_by_list_or_prefix() -> None:
    assert parse(dialect(access_ports=["swp2"]), LEAF_LINKS, NO_VRFS).access_ports == {"swp2": 200}
    assert parse(dialect(access_port_prefix="eth"), LEAF_LINKS, NO_VRFS).access_ports == {}


def test_parse_routed_tenant() -> None:
    state = parse(dialect(), json.dumps(ROUTED_LINKS), ROUTED_VRFS)
    assert state.vrfs == {"tenA": TENANT_A}
    # The L3 VNI's bridge is no segment; the SVI keeps its VRF and its IPv4 gateway.
    assert state.segments == {300: Segment(300, 10300, vrf="tenA", gateway="10.1.0.1/24")}
    assert state.access_ports == {"swp3": 300}


def test_a_vrf_without_its_l3vni_in_frr_is_not_complete() -> None:
    state = parse(dialect(), json.dumps(ROUTED_LINKS), NO_VRFS)
    assert state.vrfs == {}
    # br4001/vni104001 then read as a plain segment: planning a VRF over it is refused.
    assert 4001 in state.segments
    with pytest.raises(InvalidChange):
        plan_vrf(state, TENANT_A)


def test_render_segment() -> None:
    assert dialect().render(AddSegment(Segment(100, 10100))) == [
        "ip link add br100 type bridge mcast_snooping 0",
        "ip link add vni10100 type vxlan id 10100 local 10.255.1.1 dstport 4789 nolearning",
        "ip link set dev vni10100 master br100",
        "bridge link set dev vni10100 learning off",
        "ip link set dev br100 up",
        "ip link set dev vni10100 up",
    ]


def test_render_routed_segment() -> None:
    commands = dialect(gateway_mac="44:38:39:ff:00:01").render(
        AddSegment(Segment(300, 10300, vrf="tenA", gateway="10.1.0.1/24"))
    )
    assert commands[4:7] == [
        "ip link set dev br300 master tenA",
        "ip link set dev br300 address 44:38:39:ff:00:01",
        "ip address add 10.1.0.1/24 dev br300",
    ]


def test_removals_are_guarded() -> None:
    """Delete only what has our shape; nothing to delete is no error."""
    assert dialect().render(RemoveSegment(Segment(100, 10100))) == [
        "if ip -d -o link show dev vni10100 2>/dev/null | grep -q ' vxlan id 10100 ';"
        " then ip link del dev vni10100; fi",
        "if [ -d /sys/class/net/br100/bridge ]; then ip link del dev br100; fi",
    ]
    assert dialect().render(ClearAccessPort("swp1", 100)) == [
        "if ip -o link show dev swp1 2>/dev/null | grep -q ' master br100 ';"
        " then ip link set dev swp1 nomaster && ip link set dev swp1 down; fi"
    ]


def test_render_access_port() -> None:
    assert dialect().render(SetAccessPort("swp1", 200, previous=100)) == [
        "ip link set dev swp1 master br200",
        "ip link set dev swp1 up",
    ]


@pytest.mark.parametrize("port", ["uplink1", "eth0", "swp1; reboot", "swpx"])
def test_unmanaged_ports_are_refused(port: str) -> None:
    with pytest.raises(InvalidChange):
        dialect().render(SetAccessPort(port, 100))
    with pytest.raises(InvalidChange):
        dialect().render(ClearAccessPort(port, 100))


def test_render_vrf_frr_first() -> None:
    commands = dialect().render(AddVrf(TENANT_A))
    assert commands[0] == (
        f"vtysh -H /dev/null --vty_socket {VTYSH_DIR} -c 'configure terminal' -c 'vrf tenA'"
        " -c 'vni 104001' -c 'exit-vrf' -c 'router bgp 65000 vrf tenA'"
        " -c 'bgp router-id 10.255.1.1' -c 'address-family ipv4 unicast'"
        " -c 'redistribute connected' -c 'exit-address-family' -c 'address-family l2vpn evpn'"
        " -c 'advertise ipv4 unicast' -c 'exit-address-family'"
    )
    assert commands[1:5] == [
        "ip link add tenA type vrf table 1001",
        "ip link set dev tenA up",
        "ip link add br4001 type bridge mcast_snooping 0",
        "ip link set dev br4001 master tenA",
    ]
    assert "ip link add vni104001 type vxlan id 104001" in commands[5]


def test_remove_vrf_unconfigures_the_l3vni_first_and_is_guarded() -> None:
    """FRR refuses `no router bgp ... vrf` while the VRF has an L3 VNI, and `no vrf` while the
    kernel has the VRF: L3 VNI, BGP instance, kernel devices, FRR's VRF, in that order."""
    vtysh = f"vtysh -H /dev/null --vty_socket {VTYSH_DIR}"
    running = f"{vtysh} -c 'show running-config'"
    no_vrf = f"{vtysh} -c 'configure terminal' -c 'no vrf tenA'"
    assert dialect().render(RemoveVrf(TENANT_A)) == [
        f"if {running} | grep -qx 'vrf tenA'; then {vtysh} -c 'configure terminal'"
        " -c 'vrf tenA' -c 'no vni 104001' -c 'exit-vrf'; fi",
        f"if {running} | grep -qx 'router bgp 65000 vrf tenA'; then {vtysh}"
        " -c 'configure terminal' -c 'no router bgp 65000 vrf tenA'; fi",
        "if ip -d -o link show dev vni104001 2>/dev/null | grep -q ' vxlan id 104001 ';"
        " then ip link del dev vni104001; fi",
        "if [ -d /sys/class/net/br4001/bridge ]; then ip link del dev br4001; fi",
        "if ip -d -o link show dev tenA 2>/dev/null | grep -q ' vrf table 1001 ';"
        " then ip link del dev tenA; fi",
        # `no vrf` of an unknown VRF succeeds; retried while zebra catches up with the kernel
        f"{no_vrf} || {{ sleep 0.2 && {no_vrf}; }} || {{ sleep 1 && {no_vrf}; }}",
    ]


def test_bad_vrf_name_is_refused() -> None:
    with pytest.raises(InvalidChange):
        dialect().render(AddVrf(Vrf("a b", 1, 2, 3)))


def test_plan_keeps_segments_off_a_vrfs_l3_vni() -> None:
    """A segment on the L3 VLAN would fail on the existing bridge, and its rollback would
    delete the VRF's bridge: refused before anything runs."""
    state = SwitchState(vrfs={"tenA": TENANT_A})
    with pytest.raises(InvalidChange):
        plan_segment(state, Segment(4001, 20000))
    with pytest.raises(InvalidChange):
        plan_segment(state, Segment(400, 104001))
    with pytest.raises(InvalidChange):
        plan_vrf(SwitchState(segments={300: Segment(300, 104001)}), TENANT_A)


def test_shell_line_marks_each_step() -> None:
    line = _shell_line(["ip link add br1 type bridge", "if a; then b; fi"], 3, "c0ffee")
    assert line == (
        "printf '\\n__%s=%d\\n' mpc0ffee_step 3 && { ip link add br1 type bridge; }"
        " && printf '\\n__%s=%d\\n' mpc0ffee_step 4 && { if a; then b; fi; }"
        "; printf '\\n__%s=%d\\n' mpc0ffee_rc $?"
    )
    assert "__mpc0ffee_" not in line  # the markers never appear literally in the command


def test_batches_keep_order_and_bound_lines() -> None:
    commands = [f"echo {i:04d} {'x' * 500}" for i in range(40)]
    batches = _batches(commands)
    assert [c for _, batch in batches for c in batch] == commands
    assert all(len(_shell_line(b, s, "c0ffee")) <= MAX_SHELL_LINE for s, b in batches)
    assert [s for s, _ in batches] == [
        1 + sum(len(b) for _, b in batches[:i]) for i in range(len(batches))
    ]


def test_fabric_plan_names_and_addresses(tmp_path: Path) -> None:
    topology = plan(FabricConfig(prefix="lab", state_dir=tmp_path, spines=2, leaves=3))
    leaf3 = topology.switch("leaf3")
    assert (leaf3.netns, leaf3.mgmt_address, leaf3.loopback) == (
        "lab-leaf3",
        "172.31.250.103",
        "10.255.1.3",
    )
    assert [(u.ifname, u.address, u.peer_address) for u in leaf3.underlay] == [
        ("uplink1", "10.254.1.5/31", "10.254.1.4"),
        ("uplink2", "10.254.2.5/31", "10.254.2.4"),
    ]
    assert topology.switch("spine2").mgmt_address == "172.31.250.12"
    assert [h.name for h in topology.hosts if h.leaf == "leaf3"] == ["h3-1", "h3-2"]
    addresses = [s.mgmt_address for s in topology.switches]
    assert len(set(addresses)) == 5
    assert all(
        ipaddress.ip_address(a) in ipaddress.ip_network("172.31.250.0/24") for a in addresses
    )


@pytest.mark.parametrize("prefix", ["", "Lab", "lab-1", "toolongpfx", "1lab"])
def test_fabric_prefix_is_checked(prefix: str, tmp_path: Path) -> None:
    with pytest.raises(FabricError):
        FabricConfig(prefix=prefix, state_dir=tmp_path)


def test_fabric_leaf_kind(tmp_path: Path) -> None:
    assert plan(FabricConfig(prefix="lab", state_dir=tmp_path)).switch("leaf1").kind == "netns"
    topology = plan(FabricConfig(prefix="lab", state_dir=tmp_path, leaf_kind="uml"))
    assert [(s.name, s.kind) for s in topology.switches] == [
        ("spine1", "netns"),  # spines need no VRF
        ("leaf1", "uml"),
        ("leaf2", "uml"),
    ]
    with pytest.raises(FabricError, match="leaf_kind"):
        FabricConfig(prefix="lab", state_dir=tmp_path, leaf_kind="vm")


def test_uml_leaf_ports_are_its_vector_devices_in_order(tmp_path: Path) -> None:
    topology = plan(FabricConfig(prefix="lab", state_dir=tmp_path, spines=2, leaf_kind="uml"))
    leaf = topology.switch("leaf1")
    assert uml.ports(leaf) == ["eth0", "uplink1", "uplink2", "swp1", "swp2"]
    command = uml.kernel_command(leaf)
    devices = [arg for arg in command if arg.startswith("vec")]
    assert devices == [f"vec{n}:transport=tap,ifname=u-{p}" for n, p in enumerate(uml.ports(leaf))]
    lines = uml.interfaces(leaf, topology)
    assert lines[:5] == [f"link set dev vec{n} name {p}" for n, p in enumerate(uml.ports(leaf))]
    assert "address add 10.254.2.1/31 dev uplink2" in lines
    assert not [line for line in lines if "swp" in line and "name" not in line]  # ports stay down
    assert command[-3:] == ["init=/bin/sh", "--", str(uml.INIT)]


def test_uml_leaf_boot_runs_frr_with_its_own_sockets(tmp_path: Path) -> None:
    topology = plan(FabricConfig(prefix="lab", state_dir=tmp_path, leaf_kind="uml"))
    leaf = topology.switch("leaf2")
    script = uml.boot_script(leaf, topology, tmp_path / "state dir")
    runtime = "/run/metalplane-fabric/lab/leaf2"
    assert (
        f"/usr/lib/frr/bgpd -d -A 127.0.0.1 -P 0 -p 179 -f {runtime}/bgpd.conf"
        " -i /run/frr/bgpd.pid -z /run/frr/zserv.api --vty_socket /run/frr"
    ) in script
    assert f"mount --bind '{tmp_path}/state dir/ssh/shadow' /etc/shadow" in script
    assert "hostname leaf2" in script
