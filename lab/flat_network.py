"""One flat Ethernet segment for lab nodes without a fabric (the cluster benchmark): a network
namespace per node whose `eth0` is a veth on one bridge. Clusters' networks get distinct
subnets from the tenant supernet, so their nodes do not collide on it; there is no isolation
between tenants here (that is the fabric's job, tested with it)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from lab.fabric.system import ip_batch, namespaces, netns_pids, stop_pids

IFNAME = "eth0"


class FlatNetwork:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.switch = f"{prefix}-sw"

    def netns(self, node_id: str) -> str:
        return f"{self.prefix}-{node_id}"

    def up(self, node_ids: Sequence[str]) -> None:
        self.down()  # whatever a crashed run left
        ip_batch([f"netns add {self.switch}"] + [f"netns add {self.netns(n)}" for n in node_ids])
        ip_batch(["link add br0 type bridge", "link set br0 up"], self.switch)
        ip_batch(
            f"link add v{i} netns {self.switch} type veth peer name {IFNAME} netns {self.netns(n)}"
            for i, n in enumerate(node_ids)
        )
        ip_batch((f"link set v{i} master br0 up" for i in range(len(node_ids))), self.switch)
        for node_id in node_ids:
            ip_batch(["link set lo up", f"link set {IFNAME} up"], self.netns(node_id))

    def down(self) -> None:
        """By PID (whatever still runs in the namespaces), then by name."""
        for netns in namespaces(self.prefix):
            stop_pids(netns_pids(netns))
            subprocess.run(["ip", "netns", "del", netns], check=False, timeout=10)
