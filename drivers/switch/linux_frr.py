"""The dialect of Linux + FRR switches, in the Cumulus "traditional bridge" style.

- segment VLAN v / VNI n: a bridge `br<v>` with a VXLAN device `vni<n>` in it (local VTEP
  address, UDP 4789, no data-plane learning: BGP EVPN `advertise-all-vni` in FRR announces the
  VNI and its MACs, and installs the remote VTEPs and MACs); learning off on the VXLAN port,
  as EVPN fills its forwarding entries. An SVI is `br<v>` itself: the gateway address on it,
  the bridge enslaved to the tenant VRF.
- access port: a managed port enslaved to `br<v>` (untagged). A cleared port is also set
  down: an unbridged port of a Linux switch would be a routed interface.
- VRF: a kernel VRF device (`table`), FRR `vrf <name>` / `vni <l3vni>`, a BGP instance
  `router bgp <asn> vrf <name>` that advertises its IPv4 routes as EVPN type-5; the L3 VNI is
  a VXLAN device `vni<l3vni>` in bridge `br<l3vlan>`, enslaved to the VRF (symmetric IRB).

The dialect owns those names: `br<number>` and `vni<number>` on a managed switch are its own.
Every removal is guarded (it deletes only what has the shape it would have made, and does
nothing when the thing is already gone), so that the rollback of a half-applied change undoes
what exists and leaves anything foreign in place. Additions are plain and fail on a clash.

`parse_state` reads the running state: the kernel's links (`ip -d -j addr show`) and FRR's
L3 VNI of each VRF (`show vrf vni json`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from drivers.switch.base import (
    Dialect,
    InvalidChange,
    Nos,
    Segment,
    Switch,
    SwitchState,
    Vrf,
)
from drivers.switch.ssh import CommandStyle, SshTarget, SshTransport

VXLAN_PORT = 4789
# No IGMP snooping: a snooping bridge joins the all-snoopers group and sends its own IGMP
# reports into the tenant's segment; EVPN floods a segment's multicast anyway.
BRIDGE_OPTIONS = "type bridge mcast_snooping 0"
LINKS = "ip -d -j addr show"
# A kernel without a feature refuses the device type: no retry can fix that.
PERMANENT_ERRORS = (r"Unknown device type", r"Operation not supported")

_BRIDGE = re.compile(r"br(\d+)")
_VXLAN = re.compile(r"vni(\d+)")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,14}")  # a Linux interface name we can quote-free


class LinuxFrrDialect(Dialect):
    nos = Nos.LINUX_FRR

    def __init__(
        self,
        *,
        vtep: str,
        asn: int,
        vtysh_socket_dir: str | None = None,
        access_ports: Collection[str] | None = None,
        access_port_prefix: str = "swp",
        gateway_mac: str | None = None,
    ) -> None:
        """`vtep`: the local VTEP (loopback) address. Managed access ports: `access_ports` when
        given, else every port named `<access_port_prefix><n>`. `gateway_mac`: the anycast MAC
        every leaf gives its SVIs (None: the bridge's own)."""
        self.vtep = str(ipaddress.ip_address(vtep))
        self.asn = asn
        self.access_ports = frozenset(access_ports) if access_ports is not None else None
        self._port_re = re.compile(re.escape(access_port_prefix) + r"\d+")
        self.gateway_mac = gateway_mac
        socket = f" --vty_socket {shlex.quote(vtysh_socket_dir)}" if vtysh_socket_dir else ""
        # Our commands stay out of the operators' vtysh history (~/.history_frr).
        self.vtysh = f"vtysh -H /dev/null{socket}"
        self.vrf_vnis = f"{self.vtysh} -c 'show vrf vni json'"

    def manages(self, port: str) -> bool:
        if self.access_ports is not None:
            return port in self.access_ports
        return self._port_re.fullmatch(port) is not None

    # Reading.

    def state_commands(self) -> Sequence[str]:
        return [LINKS, self.vrf_vnis]

    def parse_state(self, outputs: Mapping[str, str]) -> SwitchState:
        links = {link["ifname"]: link for link in json.loads(outputs[LINKS])}
        l3vnis = {
            entry["vrf"]: int(entry["vni"])
            for entry in json.loads(outputs[self.vrf_vnis]).get("vrfs", [])
            if entry.get("vni")
        }
        # VNI -> the bridge its VXLAN device is in, for our own names only.
        bridged: dict[int, str] = {}
        for name, link in links.items():
            match = _VXLAN.fullmatch(name)
            vni = _info(link).get("id")
            master = link.get("master")
            if match and _kind(link) == "vxlan" and vni == int(match.group(1)) and master:
                if _BRIDGE.fullmatch(master) and _kind(links.get(master, {})) == "bridge":
                    bridged[vni] = master

        vrfs: dict[str, Vrf] = {}
        for name, link in links.items():
            l3vni = l3vnis.get(name)
            bridge = bridged.get(l3vni) if l3vni is not None else None
            if _kind(link) != "vrf" or bridge is None:
                continue
            table = int(_info(link)["table"])
            vrfs[name] = Vrf(name=name, table=table, l3vni=l3vni, l3vlan=_number(bridge))

        l3 = {v.l3vni for v in vrfs.values()}
        segments: dict[int, Segment] = {}
        for vni, bridge in bridged.items():
            if vni in l3:
                continue
            svi = links[bridge]
            master = svi.get("master")
            vrf = master if master and _kind(links.get(master, {})) == "vrf" else None
            vlan = _number(bridge)
            segments[vlan] = Segment(vlan=vlan, vni=vni, vrf=vrf, gateway=_gateway(svi))

        ports = {
            name: _number(link["master"])
            for name, link in links.items()
            if self.manages(name) and _BRIDGE.fullmatch(link.get("master") or "")
        }
        return SwitchState(vrfs=vrfs, segments=segments, access_ports=ports)

    # Writing.

    def set_access_port(self, port: str, vlan: int) -> list[str]:
        self._check_port(port)
        return [f"ip link set dev {port} master br{vlan}", f"ip link set dev {port} up"]

    def clear_access_port(self, port: str, vlan: int) -> list[str]:
        self._check_port(port)
        return [
            f"if {_in_bridge(port, f'br{vlan}')}; then"
            f" ip link set dev {port} nomaster && ip link set dev {port} down; fi"
        ]

    def add_segment(self, s: Segment) -> list[str]:
        bridge, vxlan = f"br{s.vlan}", f"vni{s.vni}"
        commands = [
            f"ip link add {bridge} {BRIDGE_OPTIONS}",
            self._vxlan_add(vxlan, s.vni),
            f"ip link set dev {vxlan} master {bridge}",
            f"bridge link set dev {vxlan} learning off",
        ]
        if s.vrf is not None:
            _check_name(s.vrf)
            commands.append(f"ip link set dev {bridge} master {s.vrf}")
        if s.gateway is not None:
            if self.gateway_mac is not None:
                commands.append(f"ip link set dev {bridge} address {self.gateway_mac}")
            commands.append(f"ip address add {ipaddress.ip_interface(s.gateway)} dev {bridge}")
        commands += [f"ip link set dev {bridge} up", f"ip link set dev {vxlan} up"]
        return commands

    def remove_segment(self, s: Segment) -> list[str]:
        return [_del_vxlan(f"vni{s.vni}", s.vni), _del_bridge(f"br{s.vlan}")]

    def add_vrf(self, v: Vrf) -> list[str]:
        """FRR first: it takes a VRF before the kernel has it, and a kernel without VRF
        support then refuses the second step, after something needs undoing."""
        _check_name(v.name)
        bridge, vxlan = f"br{v.l3vlan}", f"vni{v.l3vni}"
        frr = self._vtysh_config(
            f"vrf {v.name}",
            f"vni {v.l3vni}",
            "exit-vrf",
            f"router bgp {self.asn} vrf {v.name}",
            f"bgp router-id {self.vtep}",
            "address-family ipv4 unicast",
            "redistribute connected",
            "exit-address-family",
            "address-family l2vpn evpn",
            "advertise ipv4 unicast",
            "exit-address-family",
        )
        return [
            frr,
            f"ip link add {v.name} type vrf table {v.table}",
            f"ip link set dev {v.name} up",
            f"ip link add {bridge} {BRIDGE_OPTIONS}",
            f"ip link set dev {bridge} master {v.name}",
            self._vxlan_add(vxlan, v.l3vni),
            f"ip link set dev {vxlan} master {bridge}",
            f"bridge link set dev {vxlan} learning off",
            f"ip link set dev {bridge} up",
            f"ip link set dev {vxlan} up",
        ]

    def remove_vrf(self, v: Vrf) -> list[str]:
        """The L3 VNI leaves FRR first (FRR refuses to delete the BGP instance of a VRF that
        still has one: "Please unconfigure l3vni"), then the BGP instance, the kernel's
        devices, and last FRR's VRF (FRR deletes only a VRF the kernel no longer has)."""
        _check_name(v.name)
        running = f"{self.vtysh} -c 'show running-config'"
        instance = f"router bgp {self.asn} vrf {v.name}"
        no_vrf = self._vtysh_config(f"no vrf {v.name}")
        return [
            # `vrf X` would create the VRF in FRR: only when it is there.
            f"if {running} | grep -qx 'vrf {v.name}'; then"
            f" {self._vtysh_config(f'vrf {v.name}', f'no vni {v.l3vni}', 'exit-vrf')}; fi",
            f"if {running} | grep -qx '{instance}'; then"
            f" {self._vtysh_config(f'no {instance}')}; fi",
            _del_vxlan(f"vni{v.l3vni}", v.l3vni),
            _del_bridge(f"br{v.l3vlan}"),
            f"if ip -d -o link show dev {v.name} 2>/dev/null | grep -q ' vrf table {v.table} ';"
            f" then ip link del dev {v.name}; fi",
            # Unguarded: a VRF without configuration is missing from the running config, and
            # `no vrf` of an unknown VRF succeeds. Retried: zebra may not have seen the
            # kernel's deletion yet ("Only inactive VRFs can be deleted").
            " || ".join([no_vrf, f"{{ sleep 0.2 && {no_vrf}; }}", f"{{ sleep 1 && {no_vrf}; }}"]),
        ]

    def _vxlan_add(self, name: str, vni: int) -> str:
        return (
            f"ip link add {name} type vxlan id {vni} local {self.vtep}"
            f" dstport {VXLAN_PORT} nolearning"
        )

    def _vtysh_config(self, *lines: str) -> str:
        return " ".join([self.vtysh, "-c 'configure terminal'", *(f"-c '{x}'" for x in lines)])

    def _check_port(self, port: str) -> None:
        if not self.manages(port) or not _NAME.fullmatch(port):
            raise InvalidChange(f"port {port} is not an access port this driver manages")


def linux_frr_switch(
    name: str,
    target: SshTarget,
    *,
    vtep: str,
    asn: int,
    vtysh_socket_dir: str | None = None,
    access_ports: Collection[str] | None = None,
    access_port_prefix: str = "swp",
    gateway_mac: str | None = None,
) -> Switch:
    """A Linux + FRR switch driven over SSH (shell commands, exit status checked)."""
    dialect = LinuxFrrDialect(
        vtep=vtep,
        asn=asn,
        vtysh_socket_dir=vtysh_socket_dir,
        access_ports=access_ports,
        access_port_prefix=access_port_prefix,
        gateway_mac=gateway_mac,
    )
    transport = SshTransport(target, style=CommandStyle.SHELL, permanent_errors=PERMANENT_ERRORS)
    return Switch(name, dialect, transport)


def _kind(link: Mapping[str, Any]) -> str | None:
    return (link.get("linkinfo") or {}).get("info_kind")


def _info(link: Mapping[str, Any]) -> Mapping[str, Any]:
    return (link.get("linkinfo") or {}).get("info_data") or {}


def _number(name: str) -> int:
    return int(re.sub(r"^\D+", "", name))


def _gateway(link: Mapping[str, Any]) -> str | None:
    for address in link.get("addr_info", []):
        if address.get("family") == "inet" and address.get("scope") == "global":
            return f"{address['local']}/{address['prefixlen']}"
    return None


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidChange(f"{name!r} is not a valid interface name")


def _in_bridge(port: str, bridge: str) -> str:
    return f"ip -o link show dev {port} 2>/dev/null | grep -q ' master {bridge} '"


def _del_vxlan(name: str, vni: int) -> str:
    shape = f"ip -d -o link show dev {name} 2>/dev/null | grep -q ' vxlan id {vni} '"
    return f"if {shape}; then ip link del dev {name}; fi"


def _del_bridge(name: str) -> str:
    return f"if [ -d /sys/class/net/{name}/bridge ]; then ip link del dev {name}; fi"
