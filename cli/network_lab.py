"""The network lab `metalplane up` runs beside the simulated nodes, when the machine allows it:
an Ethernet leaf/spine fabric (lab.fabric: Linux + FRR switches with EVPN, managed over SSH)
whose hosts stand in for the nodes' NICs, and an InfiniBand subnet (ibsim + OpenSM) with one
HCA port per node. The network worker then drives both for real."""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.fabric import Fabric, FabricConfig
from lab.fabric.topology import HOST_IFNAME
from lab.ib.subnet import IbSubnet

log = logging.getLogger("metalplane.up")

FABRIC_PREFIX = "mplab"
LEAVES = 2
MAX_HOSTS_PER_LEAF = 48
# The provisioning network of the lab fabric: outside the tenant pools of the default settings.
PROVISIONING = {"vlan": 10, "vni": 10010, "cidr": "192.168.100.0/24"}
_FABRIC_TOOLS = ("/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/sbin/sshd")
_IB_TOOLS = ("ibsim", "opensm", "smpquery")
_SLURM_TOOLS = ("slurmctld", "slurmd", "munged", "srun")


def refusal() -> str | None:
    """Why the network lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "it needs root (network namespaces, the simulated IB fabric)"
    missing = [t for t in _FABRIC_TOOLS if not Path(t).exists()]
    missing += [t for t in _IB_TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing (`make test` installs the lab packages as root)"
    return None


def slurm_refusal() -> str | None:
    """Why lab nodes cannot run Slurm daemons here (they need the network lab too)."""
    missing = [t for t in _SLURM_TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing (`make test` installs the lab packages as root)"
    return None


@dataclass(frozen=True)
class NicPort:
    """Where a lab node's NIC is: a fabric host cabled to a leaf's access port."""

    host: str
    leaf: str
    port: str


class NetworkLab:
    def __init__(self, data_dir: Path, nodes: int) -> None:
        self.nodes = nodes
        self.ib = IbSubnet(data_dir / "ib", nodes=nodes)
        hosts_per_leaf = min(MAX_HOSTS_PER_LEAF, math.ceil(nodes / LEAVES))
        self.fabric = Fabric(
            FabricConfig(
                prefix=FABRIC_PREFIX,
                state_dir=data_dir / "fabric",
                leaves=LEAVES,
                hosts_per_leaf=hosts_per_leaf,
            )
        )
        self._started: list[Any] = []

    def start(self) -> None:
        """Blocking (a few seconds): run it in a thread."""
        try:
            self.fabric.up()
            self._started.append(self.fabric)
            self.ib.start()
            self._started.append(self.ib)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            if part is self.fabric:
                self.fabric.down()
            else:
                self.ib.stop()

    @property
    def note(self) -> str:
        cabled = min(self.nodes, LEAVES * self.fabric.config.hosts_per_leaf)
        return (
            f"Ethernet: {LEAVES} leaves + 1 spine (Linux + FRR, EVPN), {cabled} node NICs; "
            f"InfiniBand: ibsim + OpenSM, {self.nodes} HCA ports"
        )

    def worker_env(self) -> dict[str, str]:
        return {
            "METALPLANE_IB_BACKEND": "opensm",
            "METALPLANE_OPENSM_PARTITIONS_FILE": str(self.ib.partitions_file),
            "METALPLANE_OPENSM_PID_FILE": str(self.ib.opensm_pid_file),
        }

    def switch_records(self) -> list[dict[str, Any]]:
        """What enrolls the leaves (POST /v1/switches); L2 only: the host kernel has no VRF."""
        records = []
        for leaf in self.fabric.topology.leaves:
            access = self.fabric.access(leaf.name)
            records.append({
                "id": leaf.name, "role": "leaf", "nos": "linux-frr",
                "mgmt_address": access.host, "username": access.username,
                "password": access.password, "asn": access.asn,
                "vtep_address": access.vtep, "routing": False,
            })  # fmt: skip
        return records

    def nic_port(self, node_id: str) -> NicPort | None:
        """lab-001 on leaf1 swp1, lab-002 on leaf2 swp1, lab-003 on leaf1 swp2, ..."""
        index = int(node_id.rsplit("-", 1)[1]) - 1
        leaf, port = index % LEAVES + 1, index // LEAVES + 1
        if port > self.fabric.config.hosts_per_leaf:
            return None
        return NicPort(host=f"h{leaf}-{port}", leaf=f"leaf{leaf}", port=f"swp{port}")

    def host_netns(self, node_id: str) -> str | None:
        """The namespace of the node's fabric host: where its cluster daemons run."""
        nic = self.nic_port(node_id)
        return None if nic is None else self.fabric.host(nic.host).netns

    def cabling(self, node_id: str, mac: str) -> dict[str, Any]:
        """The node's cabling (PUT /v1/nodes/{id}/cabling); its fabric host takes its MAC."""
        body: dict[str, Any] = {"links": [], "ib_guids": []}
        nic = self.nic_port(node_id)
        if nic is not None:
            self.fabric.host_exec(nic.host, "ip", "link", "set", HOST_IFNAME, "address", mac)
            body["links"].append({"mac": mac, "switch": nic.leaf, "port": nic.port})
        hca = self.ib.ports.get(node_id.replace("lab-", "gpu-", 1))
        if hca is not None:
            body["ib_guids"].append(hca.port_guid)
        return body
