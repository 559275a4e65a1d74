"""Cisco NX-OS (Nexus 9000): VXLAN with a BGP EVPN control plane, symmetric IRB.

Configuration follows the Cisco Nexus 9000 Series NX-OS VXLAN Configuration Guide (chapter
"Configuring VXLAN BGP EVPN": VLAN to vn-segment, tenant VRF with its L3 VNI, VLAN and SVI,
`member vni ... associate-vrf` on nve1, `evpn` / `vni ... l2`, anycast gateway SVIs); the
state is read from `show ... | json`, whose tables and field names are those of the Cisco
Nexus 9000 Series NX-OS Show Command Reference (`__readonly__` schemas, release 9.3(x)).

Fabric bootstrap, not done here: `nv overlay evpn`, `feature bgp`, `feature interface-vlan`,
`feature vn-segment-vlan-based`, `feature nv overlay`, `fabric forwarding anycast-gateway-mac`,
`interface nve1` (`host-reachability protocol bgp`, source interface, `no shutdown`) and the
BGP underlay and EVPN peerings.

How the model maps onto NX-OS:
- A VRF is its L3 VLAN with the L3 VNI as vn-segment, `vrf context` with that VNI, an RD
  `<router id>:<table>` (so the table reads back; `rd auto` would derive it from an internal VRF
  id) and `route-target both auto evpn`, the L3 VLAN's SVI in the VRF (`ip forward`), the VNI
  on nve1 with `associate-vrf`, and the VRF under `router bgp`.
- A segment is a VLAN with its L2 VNI as vn-segment, the VNI on nve1 (ingress replication by
  BGP, or a multicast group), its EVPN instance (`rd auto`, `route-target import/export auto`)
  and, with a VRF or gateway, an SVI in that VRF with the gateway address in anycast mode.
- An access port is `switchport`, `switchport mode access`, `switchport access vlan N`; leaving
  the segment puts it back in VLAN 1.
Auto route targets are `<ASN>:<VNI>`: leaves in different ASes (eBGP underlay) need
`rewrite-evpn-rt-asn` on their EVPN peerings, which is fabric bootstrap too.
"""

from __future__ import annotations

import ipaddress
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

NVE = "nve1"  # Nexus 9000 has one NVE interface
INDENT = "  "  # as NX-OS prints its running-config

SHOW_VRF = "show vrf all detail | json"
SHOW_NVE_VNI = f"show nve vni interface {NVE} detail | json"
SHOW_VRF_INTERFACE = "show vrf interface | json"
SHOW_IP_INTERFACE = "show ip interface vrf all | json"
SHOW_SWITCHPORT = "show interface switchport | json"


class NxosDialect(Dialect):
    nos = Nos.CISCO_NXOS
    # What the CLI prints when it refuses a command ("% Invalid command at '^' marker.",
    # "% Incomplete command", "ERROR: ..."): for a CLI transport's error detection.
    error_pattern = r"(?m)^(% |ERROR:|Error:)"

    def __init__(self, *, asn: int, router_id: str, mcast_group: str | None = None) -> None:
        """`mcast_group`: flood BUM traffic of every L2 VNI to this group instead of ingress
        replication with BGP EVPN type-3 routes."""
        self.asn = cli.asn(asn)
        self.router_id = cli.router_id(router_id)
        if mcast_group is not None and not ipaddress.IPv4Address(mcast_group).is_multicast:
            raise ValueError(f"{mcast_group} is not a multicast group")
        self.mcast_group = mcast_group

    # Reading.

    def state_commands(self) -> Sequence[str]:
        return (SHOW_VRF, SHOW_NVE_VNI, SHOW_VRF_INTERFACE, SHOW_IP_INTERFACE, SHOW_SWITCHPORT)

    def parse_state(self, outputs: Mapping[str, str]) -> SwitchState:
        data = {
            command: cli.load_json(outputs, command, empty=True)
            for command in self.state_commands()
        }
        try:
            return self._state(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SwitchError(f"unexpected NX-OS output: {exc!r}", retryable=False) from exc

    def _state(self, data: Mapping[str, dict[str, Any]]) -> SwitchState:
        # show nve vni interface nve1 detail: TABLE_nve_vni rows {"vni", "type": "L2 [10]" or
        # "L3 [tenant]", "vlan-bd": "10", "vni-state", ...}
        l2: dict[int, int] = {}  # VLAN -> VNI
        l3: dict[int, tuple[str, int | None]] = {}  # VNI -> (VRF, L3 VLAN)
        for row in rows(data[SHOW_NVE_VNI], "TABLE_nve_vni", "ROW_nve_vni"):
            kind, _, bracket = str(row.get("type", "")).partition(" ")
            vni, vlan = cli.number(row.get("vni")), cli.number(row.get("vlan-bd"))
            if vni is None:
                continue
            if kind == "L2" and vlan is not None:
                l2[vlan] = vni
            elif kind == "L3":
                l3[vni] = (bracket.strip("[]"), vlan)
        # show vrf all detail: TABLE_vrf rows {"vrf_name", "vrf_id", "rd", "vni", ...}
        vrfs: dict[str, Vrf] = {}
        for row in rows(data[SHOW_VRF], "TABLE_vrf", "ROW_vrf"):
            name = str(row.get("vrf_name", ""))
            l3vni = cli.number(row.get("vni")) or 0  # 0: no L3 VNI (default, management)
            table = cli.rd_index(str(row.get("rd", "")), self.router_id)
            on_nve, l3vlan = l3.get(l3vni, ("", None))
            # A VRF half made (an operation cut short) is left out: ensuring it again
            # re-applies its commands.
            if l3vni and table is not None and on_nve == name and l3vlan is not None:
                vrfs[name] = Vrf(name, table, l3vni, l3vlan)
        # show vrf interface: TABLE_if rows {"if_name", "vrf_name", "vrf_id", "soo"}
        member = {
            str(row.get("if_name")): str(row.get("vrf_name"))
            for row in rows(data[SHOW_VRF_INTERFACE], "TABLE_if", "ROW_if")
        }
        # show ip interface vrf all: TABLE_intf rows {"intf-name", "prefix", "masklen", ...}
        addresses = {
            str(row.get("intf-name")): f"{row['prefix']}/{row['masklen']}"
            for row in rows(data[SHOW_IP_INTERFACE], "TABLE_intf", "ROW_intf")
            if row.get("prefix") and cli.number(row.get("masklen")) is not None
        }
        segments = {}
        for vlan, l2vni in sorted(l2.items()):
            svi = f"Vlan{vlan}"
            vrf = member.get(svi)
            segments[vlan] = Segment(
                vlan, l2vni, None if vrf in (None, "default") else vrf, addresses.get(svi)
            )
        # show interface switchport: TABLE_interface rows {"interface", "switchport":
        # "Enabled", "oper_mode": "access", "access_vlan": "10", ...}. Only trunks are left
        # out, not ports whose operational mode is something else (a link that is down): a
        # port missed here would stay in its tenant's VLAN when cleared.
        ports: dict[str, int] = {}
        for row in rows(data[SHOW_SWITCHPORT], "TABLE_interface", "ROW_interface"):
            vlan = cli.number(row.get("access_vlan"))
            if row.get("switchport") != "Enabled" or row.get("oper_mode") == "trunk":
                continue
            if vlan is not None and vlan != cli.DEFAULT_VLAN:
                ports[str(row["interface"])] = vlan
        return SwitchState(vrfs=vrfs, segments=segments, access_ports=ports)

    # Writing.

    def set_access_port(self, port: str, vlan: int) -> list[str]:
        return _mode(
            f"interface {cli.word(port, 'port')}",
            "switchport",  # ports may default to routed (`system default switchport`)
            "switchport mode access",
            f"switchport access vlan {cli.vlan_id(vlan)}",
        )

    def clear_access_port(self, port: str, vlan: int) -> list[str]:
        return _mode(f"interface {cli.word(port, 'port')}", "no switchport access vlan")

    def add_vrf(self, vrf: Vrf) -> list[str]:
        name = cli.word(vrf.name, "VRF")
        l3vni, l3vlan = cli.vni(vrf.l3vni), cli.vlan_id(vrf.l3vlan)
        rd = cli.route_distinguisher(self.router_id, vrf.table)
        return [
            *_mode(f"vlan {l3vlan}", f"vn-segment {l3vni}"),
            *_mode(
                f"vrf context {name}",
                f"vni {l3vni}",
                f"rd {rd}",
                *_mode("address-family ipv4 unicast", "route-target both auto evpn"),
            ),
            *_mode(f"interface Vlan{l3vlan}", f"vrf member {name}", "ip forward", "no shutdown"),
            *_mode(f"interface {NVE}", f"member vni {l3vni} associate-vrf"),
            *_mode(
                f"router bgp {self.asn}",
                *_mode(f"vrf {name}", *_mode("address-family ipv4 unicast")),
            ),
        ]

    def remove_vrf(self, vrf: Vrf) -> list[str]:
        name = cli.word(vrf.name, "VRF")
        l3vlan = cli.vlan_id(vrf.l3vlan)
        return [
            *_mode(f"router bgp {self.asn}", f"no vrf {name}"),
            *_mode(f"interface {NVE}", f"no member vni {cli.vni(vrf.l3vni)} associate-vrf"),
            f"no interface Vlan{l3vlan}",
            f"no vrf context {name}",
            f"no vlan {l3vlan}",
        ]

    def add_segment(self, segment: Segment) -> list[str]:
        vlan, l2vni = cli.vlan_id(segment.vlan), cli.vni(segment.vni)
        if self.mcast_group is None:
            flood = "ingress-replication protocol bgp"
        else:
            flood = f"mcast-group {self.mcast_group}"
        commands = [
            *_mode(f"vlan {vlan}", f"vn-segment {l2vni}"),
            *_mode(f"interface {NVE}", *_mode(f"member vni {l2vni}", flood)),
            *_mode(
                "evpn",
                *_mode(
                    f"vni {l2vni} l2",
                    "rd auto",
                    "route-target import auto",
                    "route-target export auto",
                ),
            ),
        ]
        if _has_svi(segment):
            svi = []  # the VRF first: moving an interface to a VRF removes its addresses
            if segment.vrf is not None:
                svi.append(f"vrf member {cli.word(segment.vrf, 'VRF')}")
            if segment.gateway is not None:
                svi += [
                    f"ip address {cli.gateway(segment.gateway)}",
                    "fabric forwarding mode anycast-gateway",
                ]
            commands += _mode(f"interface Vlan{vlan}", *svi, "no shutdown")
        return commands

    def remove_segment(self, segment: Segment) -> list[str]:
        vlan, l2vni = cli.vlan_id(segment.vlan), cli.vni(segment.vni)
        return [
            *([f"no interface Vlan{vlan}"] if _has_svi(segment) else []),
            *_mode("evpn", f"no vni {l2vni} l2"),
            *_mode(f"interface {NVE}", f"no member vni {l2vni}"),
            f"no vlan {vlan}",
        ]


def rows(data: Mapping[str, Any], table: str, row: str) -> list[dict[str, Any]]:
    """The rows of an NX-OS JSON table. One row is printed as an object and several as a list;
    a command that prints several tables (`show ip interface vrf all`, one per VRF) repeats the
    table as a list of objects."""
    tables = data.get(table, [])
    found: list[dict[str, Any]] = []
    for entry in tables if isinstance(tables, list) else [tables]:
        value = entry.get(row, []) if isinstance(entry, dict) else []
        found += value if isinstance(value, list) else [value]
    return found


def _has_svi(segment: Segment) -> bool:
    return segment.vrf is not None or segment.gateway is not None


def _mode(head: str, *body: str) -> list[str]:
    return cli.mode(INDENT, head, *body)
