"""The lab's Ethernet fabric: Linux + FRR leaf/spine switches in network namespaces.

Each switch is a namespace `<prefix>-<name>` (spine1.., leaf1..) running FRR (zebra, bgpd:
iBGP AS 65000, spines are route reflectors, leaves `advertise-all-vni`) and an sshd on its
management address, where root logs in with the lab's password or key. Hosts are namespaces
`<prefix>-h<leaf>-<port>` whose `eth0` is cabled to an access port `swp<port>` of a leaf;
access ports start down and unbridged. The switches are configured as a driver configures
them: over SSH (drivers/switch/linux_frr.py).

`leaf_kind="uml"` (`--leaf-kind uml`) makes each leaf a user-mode-linux kernel instead
(lab/fabric/uml.py; Debian `user-mode-linux` and `kmod`): the same names, addresses, cabling
and logins, and a kernel with VRF, for routed tenants (VRFs, SVIs, L3 VNIs, EVPN type-5).
The lab reaches into a UML leaf over its SSH login only (switch_exec, vtysh, ...).

Pinned addressing (lab/fabric/topology.py): management bridge `<prefix>-mgmt` in the root
namespace with .1 of `mgmt_subnet` (default 172.31.250.0/24), spine s at .10+s, leaf l at
.100+l; loopbacks/VTEPs 10.255.0.s (spines) and 10.255.1.l (leaves); underlay /31s in
10.254.s.0/24. State dir: `fabric.json` (plan, PIDs, credentials' paths), `ssh/` (root's
password and its shadow file, the client key, known_hosts), sshd configurations and logs,
UML leaves' console logs (`uml-<leaf>.log`).
FRR's files live in /run/metalplane-fabric/<prefix>/<switch> (the frr user must reach them;
a pytest temp dir is private to root).

    python -m lab.fabric up --prefix lab --state-dir .metalplane/fabric
    python -m lab.fabric down --prefix lab --state-dir .metalplane/fabric

`down` (and every `up`, first) removes whatever the prefix left, after a crash too.
"""

from lab.fabric.fabric import Fabric, SwitchAccess, teardown
from lab.fabric.topology import FabricConfig, FabricError, HostPlan, SwitchPlan, Topology

__all__ = [
    "Fabric",
    "FabricConfig",
    "FabricError",
    "HostPlan",
    "SwitchAccess",
    "SwitchPlan",
    "Topology",
    "teardown",
]
