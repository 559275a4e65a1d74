"""Benchmark: QEMU nodes (the lab-qemu image, really PXE booting under TCG) provisioned at
once through ProvisionNode; write, per node and as medians, the seconds from power-on to
phone-home (firmware, PXE, kernel, agent: the guest's time) and the control plane's own time:
from the provision request to power-on, and from phone-home to `active`, to
bench/results/qemu-boot-<N>.json. Needs qemu-system-x86 and `make lab-image`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from sqlalchemy import select

from bench.peers import embedded_peers, save
from inventory.models import BootSession, Event
from tests.platform import Ports, running_platform

PORTS = Ports(api=18920, lab_control=18921, redfish=18922, ipmi_base=21000)


async def run(count: int) -> dict[str, Any]:
    async with (
        embedded_peers() as peers,
        running_platform(
            name="bench_qemu", postgres_url=peers.postgres.url,
            temporal_address=peers.temporal_address, data_dir=peers.work / "platform",
            ports=PORTS, nodes=0, lab_qemu_nodes=count, phone_home_timeout=600,
        ) as platform,
    ):  # fmt: skip
        ids = await platform.enroll_lab()
        requested: dict[str, float] = {}
        async with platform.api() as api:
            for node_id in ids:
                requested[node_id] = time.time()
                reply = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-qemu"})
                reply.raise_for_status()
        for node_id in ids:
            await platform.wait_state(node_id, {"active", "failed"}, timeout=900)
        nodes = {}
        async with platform.sessions() as session:
            for node_id in ids:
                lab = await platform.lab_node(node_id)
                phoned = await session.scalar(
                    select(BootSession.used_at).where(BootSession.node_id == node_id)
                )
                active = await session.scalar(
                    select(Event.at).where(Event.resource_id == node_id, Event.to_state == "active")
                )
                if phoned is None or active is None:
                    nodes[node_id] = {"failed": True}
                    continue
                power_on = float(lab["powered_on_at"])
                nodes[node_id] = {
                    "request_to_power_on": round(power_on - requested[node_id], 2),
                    "power_on_to_phone_home": round(phoned.timestamp() - power_on, 2),
                    "phone_home_to_active": round(active.timestamp() - phoned.timestamp(), 2),
                }
    ok = [n for n in nodes.values() if "failed" not in n]

    def median(key: str) -> float | None:
        return round(statistics.median(n[key] for n in ok), 2) if ok else None

    return {
        "scenario": "qemu-boot",
        "nodes": count,
        "image": "lab-qemu",
        "accel": "tcg",
        "power_on_to_phone_home_seconds_p50": median("power_on_to_phone_home"),
        "control_plane_request_to_power_on_seconds_p50": median("request_to_power_on"),
        "control_plane_phone_home_to_active_seconds_p50": median("phone_home_to_active"),
        "per_node": nodes,
        "machine": {"cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=2, help="QEMU nodes (each ~0.7 GB RSS)")
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes))
    save(result, f"qemu-boot-{args.nodes}")


if __name__ == "__main__":
    main()
