"""Arista EOS: VXLAN with a BGP EVPN control plane, symmetric IRB.

Configuration follows the Arista EOS User Manual (its VXLAN, EVPN, VRF and IPv4 chapters:
`vxlan vlan/vrf ... vni`, `router bgp` `vlan`/`vrf`, `vrf instance`, `ip address virtual`);
the state is read from the JSON that `show ... | json` prints (the eAPI models of the same
commands).

Fabric bootstrap, not done here: `service routing protocols model multi-agent`, `ip routing`,
`interface Vxlan1` with its source interface and UDP port, `ip virtual-router mac-address`
(which `ip address virtual` needs), the BGP underlay and EVPN peerings, and `router bgp`
with its router id.

How the model maps onto EOS:
- A VRF is `vrf instance`, `ip routing vrf`, its L3 VNI on Vxlan1 (`vxlan vrf X vni N`) and a
  BGP VRF whose RD is `<router id>:<table>` (so the table reads back) and whose EVPN route
  targets are `<ASN>:<L3 VNI>` (equal on every leaf). EOS carries an L3 VNI on a VLAN it picks
  itself from its dynamic range, so the model's L3 VLAN is reserved instead: configured and
  named `l3vni-<VNI>`, it cannot be taken by a segment and it tells the VLAN back.
- A segment is a VLAN mapped to its L2 VNI on Vxlan1, a BGP MAC-VRF (`rd auto`, route target
  `<ASN>:<VNI>`, `redistribute learned`) and, with a VRF or gateway, an SVI in that VRF with
  the anycast address (`ip address virtual`).
- An access port is `switchport mode access` + `switchport access vlan N`; leaving the
  segment puts it back in VLAN 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.switch import cli_common as cli
from drivers.switch.base import (
    Dialect,
    Nos,
    Segment,
    SwitchError,
    SwitchState,
    Vrf,
)

VXLAN = "Vxlan1"  # EOS has one VTEP interface
INDENT = "   "  # as EOS prints its running-config

SHOW_VLAN = "show vlan | json"
SHOW_VXLAN = f"show interfaces {VXLAN} | json"
SHOW_VRF = "show vrf | json"
SHOW_IP_INTERFACE = "show ip interface | json"
SHOW_SWITCHPORT = "show interfaces switchport | json"

# vlanToVniMap `source` of mappings configured on Vxlan1; "evpn" marks the VLANs EOS
# allocated itself for L3 VNIs.
_CONFIGURED = frozenset({"", "static"})


def l3_vlan_name(l3vni: int) -> str:
    return f"l3vni-{l3vni}"


class EosDialect(Dialect):
    nos = Nos.ARISTA_EOS
    # What the CLI prints when it refuses a command ("% Invalid input", "% Incomplete
    # command", "% Ambiguous command", ...): for a CLI transport's error detection.
    error_pattern = r"(?m)^% "

    def __init__(self, *, asn: int, router_id: str) -> None:
        self.asn = cli.asn(asn)
        self.router_id = cli.router_id(router_id)

    # Reading.

    def state_commands(self) -> Sequence[str]:
        return (SHOW_VLAN, SHOW_VXLAN, SHOW_VRF, SHOW_IP_INTERFACE, SHOW_SWITCHPORT)

    def parse_state(self, outputs: Mapping[str, str]) -> SwitchState:
        data = {command: cli.load_json(outputs, command) for command in self.state_commands()}
        try:
            return self._state(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SwitchError(f"unexpected EOS output: {exc!r}", retryable=False) from exc

    def _state(self, data: Mapping[str, dict[str, Any]]) -> SwitchState:
        # show vlan: {"vlans": {"10": {"name", "status", "dynamic", "interfaces"}}}
        vlans = {
            int(vlan): str(info.get("name", ""))
            for vlan, info in data[SHOW_VLAN].get("vlans", {}).items()
            if not info.get("dynamic", False)
        }
        by_name = {name: vlan for vlan, name in vlans.items()}
        # show interfaces Vxlan1: {"interfaces": {"Vxlan1": {"vlanToVniMap": {"10": {"vni",
        # "source"}}, "vrfToVniMap": {"tenant": 50001}}}}
        vxlan = data[SHOW_VXLAN].get("interfaces", {}).get(VXLAN, {})
        l2 = {
            int(vlan): int(mapping["vni"])
            for vlan, mapping in vxlan.get("vlanToVniMap", {}).items()
            if mapping.get("source", "") in _CONFIGURED
        }
        # show vrf: {"vrfs": {"tenant": {"routeDistinguisher": "10.0.0.1:100", ...}}}
        rds = {
            name: str(info.get("routeDistinguisher", ""))
            for name, info in data[SHOW_VRF].get("vrfs", {}).items()
        }
        vrfs: dict[str, Vrf] = {}
        for name, l3vni in vxlan.get("vrfToVniMap", {}).items():
            table = cli.rd_index(rds.get(name, ""), self.router_id)
            l3vlan = by_name.get(l3_vlan_name(int(l3vni)))
            # A VRF half made (an operation cut short) is left out: ensuring it again
            # re-applies every command, which EOS takes as no-ops where they already hold.
            if table is not None and l3vlan is not None:
                vrfs[name] = Vrf(name, table, int(l3vni), l3vlan)
        # show ip interface: {"interfaces": {"Vlan10": {"vrf", "interfaceAddress":
        # {"primaryIp", "virtualIp": {"address", "maskLen"}, ...}}}}
        routed = data[SHOW_IP_INTERFACE].get("interfaces", {})
        segments = {
            vlan: Segment(vlan, l2vni, *_svi(routed.get(f"Vlan{vlan}")))
            for vlan, l2vni in sorted(l2.items())
            if vlan in vlans
        }
        # show interfaces switchport: {"switchports": {"Ethernet1": {"enabled", "switchportInfo":
        # {"mode": "access", "accessVlanId": 10, ...}}}}
        ports: dict[str, int] = {}
        for port, info in data[SHOW_SWITCHPORT].get("switchports", {}).items():
            switchport = info.get("switchportInfo", {})
            vlan = int(switchport.get("accessVlanId", cli.DEFAULT_VLAN))
            if switchport.get("mode") == "access" and vlan != cli.DEFAULT_VLAN:
                ports[port] = vlan
        return SwitchState(vrfs=vrfs, segments=segments, access_ports=ports)

    # Writing.

    def set_access_port(self, port: str, vlan: int) -> list[str]:
        return _mode(
            f"interface {cli.word(port, 'port')}",
            "switchport mode access",
            f"switchport access vlan {cli.vlan_id(vlan)}",
        )

    def clear_access_port(self, port: str, vlan: int) -> list[str]:
        return _mode(f"interface {cli.word(port, 'port')}", "no switchport access vlan")

    def add_vrf(self, vrf: Vrf) -> list[str]:
        name = cli.word(vrf.name, "VRF")
        l3vni, l3vlan = cli.vni(vrf.l3vni), cli.vlan_id(vrf.l3vlan)
        rt = cli.route_target(self.asn, l3vni)
        rd = cli.route_distinguisher(self.router_id, vrf.table)
        return [
            *_mode(f"vlan {l3vlan}", f"name {l3_vlan_name(l3vni)}"),
            *_mode(f"vrf instance {name}"),
            f"ip routing vrf {name}",
            *_mode(f"interface {VXLAN}", f"vxlan vrf {name} vni {l3vni}"),
            *_mode(
                f"router bgp {self.asn}",
                *_mode(
                    f"vrf {name}",
                    f"rd {rd}",
                    f"route-target import evpn {rt}",
                    f"route-target export evpn {rt}",
                ),
            ),
        ]

    def remove_vrf(self, vrf: Vrf) -> list[str]:
        name = cli.word(vrf.name, "VRF")
        return [
            *_mode(f"router bgp {self.asn}", f"no vrf {name}"),
            *_mode(f"interface {VXLAN}", f"no vxlan vrf {name} vni {cli.vni(vrf.l3vni)}"),
            f"no ip routing vrf {name}",
            f"no vrf instance {name}",
            f"no vlan {cli.vlan_id(vrf.l3vlan)}",
        ]

    def add_segment(self, segment: Segment) -> list[str]:
        vlan, l2vni = cli.vlan_id(segment.vlan), cli.vni(segment.vni)
        rt = cli.route_target(self.asn, l2vni)
        commands = [
            *_mode(f"vlan {vlan}"),
            *_mode(f"interface {VXLAN}", f"vxlan vlan {vlan} vni {l2vni}"),
            *_mode(
                f"router bgp {self.asn}",
                *_mode(
                    f"vlan {vlan}", "rd auto", f"route-target both {rt}", "redistribute learned"
                ),
            ),
        ]
        if _has_svi(segment):
            svi = []  # the VRF first: moving an interface to a VRF removes its addresses
            if segment.vrf is not None:
                svi.append(f"vrf {cli.word(segment.vrf, 'VRF')}")
            if segment.gateway is not None:
                svi.append(f"ip address virtual {cli.gateway(segment.gateway)}")
            commands += _mode(f"interface Vlan{vlan}", *svi)
        return commands

    def remove_segment(self, segment: Segment) -> list[str]:
        vlan, l2vni = cli.vlan_id(segment.vlan), cli.vni(segment.vni)
        return [
            *([f"no interface Vlan{vlan}"] if _has_svi(segment) else []),
            *_mode(f"router bgp {self.asn}", f"no vlan {vlan}"),
            *_mode(f"interface {VXLAN}", f"no vxlan vlan {vlan} vni {l2vni}"),
            f"no vlan {vlan}",
        ]


def _mode(head: str, *body: str) -> list[str]:
    return cli.mode(INDENT, head, *body)


def _has_svi(segment: Segment) -> bool:
    return segment.vrf is not None or segment.gateway is not None


def _svi(interface: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The VRF (None: default) and anycast gateway of an SVI from `show ip interface`."""
    if interface is None:
        return None, None
    vrf = interface.get("vrf", "default")
    addresses = interface.get("interfaceAddress", {})
    if isinstance(addresses, list):  # `show interfaces` prints a list of one
        addresses = addresses[0] if addresses else {}
    virtual = addresses.get("virtualIp", {})
    address, length = virtual.get("address", "0.0.0.0"), int(virtual.get("maskLen", 0))
    gateway = f"{address}/{length}" if address != "0.0.0.0" else None
    return (None if vrf == "default" else str(vrf)), gateway
