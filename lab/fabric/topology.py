"""The fabric's plan: names and addresses, fixed by the configuration alone.

Pinned addressing (documented in lab/fabric/__init__.py):
- management: `mgmt_subnet` (a /24 or larger); the root-namespace bridge `<prefix>-mgmt` has
  .1, spine s has .10+s, leaf l has .100+l, each on its `eth0`; sshd listens there on port 22;
- loopbacks (router id, VTEP): spine s 10.255.0.s/32, leaf l 10.255.1.l/32;
- underlay: spine s port `swp<l>` 10.254.s.2(l-1)/31 <-> leaf l port `uplink<s>` .2(l-1)+1/31;
- hosts: namespace `<prefix>-h<l>-<p>`, its `eth0` cabled to leaf l's access port `swp<p>`.
Leaves are namespaces (`leaf_kind="netns"`) or user-mode-linux kernels (`"uml"`, lab/fabric/uml.py)
whose ports are wired to the same cable ends in the leaf's namespace; spines are namespaces.
Inside the namespaces nothing collides between fabrics; in the root namespace only the
management bridge, its veths and the management subnet do: give each fabric its own prefix
and subnet.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")
IFNAMSIZ = 15  # longest Linux interface name
RUNTIME_ROOT = Path("/run/metalplane-fabric")  # FRR's files: the frr user must reach them
MGMT_IFNAME = "eth0"
HOST_IFNAME = "eth0"
LEAF_KINDS = ("netns", "uml")


class FabricError(Exception):
    pass


@dataclass(frozen=True)
class FabricConfig:
    prefix: str
    state_dir: Path
    spines: int = 1
    leaves: int = 2
    hosts_per_leaf: int = 2
    mgmt_subnet: str = "172.31.250.0/24"
    asn: int = 65000
    leaf_kind: str = "netns"  # "uml": real kernels, with VRF (lab/fabric/uml.py)

    def __post_init__(self) -> None:
        if self.leaf_kind not in LEAF_KINDS:
            raise FabricError(f"leaf_kind {self.leaf_kind!r}: one of {LEAF_KINDS}")
        if not PREFIX.fullmatch(self.prefix):
            raise FabricError(f"prefix {self.prefix!r}: 1-8 of [a-z0-9], starting with a letter")
        if not 1 <= self.spines <= 89 or not 1 <= self.leaves <= 127:
            raise FabricError("1-89 spines and 1-127 leaves")
        if not 0 <= self.hosts_per_leaf <= 48:
            raise FabricError("0-48 hosts per leaf")
        if ipaddress.ip_network(self.mgmt_subnet).num_addresses < 256:
            raise FabricError("the management subnet needs 256 addresses or more")


@dataclass(frozen=True)
class Underlay:
    ifname: str
    address: str  # with prefix length
    peer: str  # switch name
    peer_address: str


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    role: str  # "spine" | "leaf"
    netns: str
    mgmt_address: str
    mgmt_link: str  # root-namespace end of its management veth
    loopback: str  # router id; a leaf's VTEP
    underlay: tuple[Underlay, ...]
    access_ports: tuple[str, ...]
    runtime_dir: str  # FRR: configuration, pid files, vty and zserv sockets, logs
    kind: str = "netns"  # "uml": a user-mode-linux kernel wired into `netns`


@dataclass(frozen=True)
class HostPlan:
    name: str
    netns: str
    leaf: str
    port: str
    ifname: str = HOST_IFNAME


@dataclass(frozen=True)
class Topology:
    prefix: str
    asn: int
    mgmt_bridge: str
    mgmt_gateway: str  # the root namespace's address on the management bridge, with length
    switches: tuple[SwitchPlan, ...]
    hosts: tuple[HostPlan, ...]

    def switch(self, name: str) -> SwitchPlan:
        for switch in self.switches:
            if switch.name == name:
                return switch
        raise KeyError(name)

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def spines(self) -> list[SwitchPlan]:
        return [s for s in self.switches if s.role == "spine"]

    @property
    def leaves(self) -> list[SwitchPlan]:
        return [s for s in self.switches if s.role == "leaf"]


def plan(config: FabricConfig) -> Topology:
    prefix = config.prefix
    mgmt = ipaddress.ip_network(config.mgmt_subnet)
    runtime = RUNTIME_ROOT / prefix

    def link(a: int, b: int) -> tuple[str, str]:  # spine a, leaf b: the /31 pair
        base = ipaddress.ip_address(f"10.254.{a}.0") + 2 * (b - 1)
        return f"{base}/31", f"{base + 1}/31"

    switches: list[SwitchPlan] = []
    for s in range(1, config.spines + 1):
        name = f"spine{s}"
        underlay = tuple(
            Underlay(f"swp{leaf}", link(s, leaf)[0], f"leaf{leaf}", _ip(link(s, leaf)[1]))
            for leaf in range(1, config.leaves + 1)
        )
        switches.append(
            SwitchPlan(
                name=name,
                role="spine",
                netns=f"{prefix}-{name}",
                mgmt_address=str(mgmt[10 + s]),
                mgmt_link=_ifname(f"{prefix}-{name}"),
                loopback=f"10.255.0.{s}",
                underlay=underlay,
                access_ports=(),
                runtime_dir=str(runtime / name),
            )
        )
    for leaf in range(1, config.leaves + 1):
        name = f"leaf{leaf}"
        underlay = tuple(
            Underlay(f"uplink{s}", link(s, leaf)[1], f"spine{s}", _ip(link(s, leaf)[0]))
            for s in range(1, config.spines + 1)
        )
        switches.append(
            SwitchPlan(
                name=name,
                role="leaf",
                netns=f"{prefix}-{name}",
                mgmt_address=str(mgmt[100 + leaf]),
                mgmt_link=_ifname(f"{prefix}-{name}"),
                loopback=f"10.255.1.{leaf}",
                underlay=underlay,
                access_ports=tuple(f"swp{p}" for p in range(1, config.hosts_per_leaf + 1)),
                runtime_dir=str(runtime / name),
                kind=config.leaf_kind,
            )
        )
    hosts = tuple(
        HostPlan(name=f"h{leaf}-{p}", netns=f"{prefix}-h{leaf}-{p}", leaf=f"leaf{leaf}", port=port)
        for leaf in range(1, config.leaves + 1)
        for p, port in enumerate(switches[config.spines + leaf - 1].access_ports, 1)
    )
    return Topology(
        prefix=prefix,
        asn=config.asn,
        mgmt_bridge=_ifname(f"{prefix}-mgmt"),
        mgmt_gateway=f"{mgmt[1]}/{mgmt.prefixlen}",
        switches=tuple(switches),
        hosts=hosts,
    )


def _ip(cidr: str) -> str:
    return cidr.split("/")[0]


def _ifname(name: str) -> str:
    if len(name) > IFNAMSIZ:
        raise FabricError(f"interface name {name!r} is longer than {IFNAMSIZ}: shorten the prefix")
    return name
