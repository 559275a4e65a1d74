"""Benchmark: QEMU nodes (the lab-qemu image, really PXE booting under TCG) provisioned at
once through ProvisionNode; write, per node and as medians, the seconds from power-on to
phone-home (firmware, PXE, kernel, agent: the guest's time) and the control plane's own time:
from the provision request to power-on, and from phone-home to `active`. Then each node is
reset over IPMI (a stateless image: it PXE boots again) for the seconds from the reset to its
phone-home and from that to CheckNodeBoot's verdict. Last, every node is released: its agent
boots and wipes its disk (cleaning), then commissioned again (its agent inspects it and runs
the burn-in), each timed the same way. Written to
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
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.factory import driver_for
from inventory.models import BootSession, Event
from tests.platform import Platform, Ports, running_platform

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
        await _reboot_all(platform, [i for i in ids if "failed" not in nodes[i]], nodes)
        await _release_all(platform, [i for i in ids if "failed" not in nodes[i]], nodes)
        await _commission_all(platform, [i for i in ids if "failed" not in nodes[i]], nodes)
    ok = [n for n in nodes.values() if "failed" not in n]

    def median(key: str) -> float | None:
        values = [n[key] for n in ok if key in n]
        return round(statistics.median(values), 2) if values else None

    return {
        "scenario": "qemu-boot",
        "nodes": count,
        "image": "lab-qemu",
        "accel": "tcg",
        "power_on_to_phone_home_seconds_p50": median("power_on_to_phone_home"),
        "control_plane_request_to_power_on_seconds_p50": median("request_to_power_on"),
        "control_plane_phone_home_to_active_seconds_p50": median("phone_home_to_active"),
        "reset_to_phone_home_seconds_p50": median("reset_to_phone_home"),
        "control_plane_phone_home_to_reboot_checked_seconds_p50": median(
            "phone_home_to_reboot_checked"
        ),
        "control_plane_release_to_cleaning_power_on_seconds_p50": median(
            "release_to_cleaning_power_on"
        ),
        "cleaning_power_on_to_report_seconds_p50": median("cleaning_power_on_to_report"),
        "control_plane_report_to_available_seconds_p50": median("report_to_available"),
        "control_plane_commission_to_power_on_seconds_p50": median("commission_to_power_on"),
        "inspection_power_on_to_report_seconds_p50": median("inspection_power_on_to_report"),
        "control_plane_inspection_report_to_available_seconds_p50": median(
            "inspection_report_to_available"
        ),
        "per_node": nodes,
        "machine": {"cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def _reboot_all(platform: Platform, ids: list[str], nodes: dict[str, Any]) -> None:
    """Reset every active node over IPMI (the image is stateless: each PXE boots again), and add
    the seconds from the reset to its phone-home and from that to CheckNodeBoot's verdict."""
    reset_at: dict[str, float] = {}
    for record in await platform.lab_nodes():
        if record["id"] in ids:
            reset_at[record["id"]] = time.time()
            await driver_for(BmcEndpoint(**record["bmc"]), timeout=10.0).reset()
    checked: dict[str, Any] = {}
    async with asyncio.timeout(900):
        while len(checked) < len(ids):
            await asyncio.sleep(0.5)
            async with platform.sessions() as session:
                rows = await session.execute(
                    select(Event.resource_id, Event.at).where(
                        Event.workflow_id.like("node-boot/%"), Event.resource_id.in_(ids)
                    )
                )
                checked = dict(rows.tuples().all())
    async with platform.sessions() as session:
        for node_id in ids:
            phoned = await session.scalar(
                select(BootSession.used_at).where(BootSession.node_id == node_id)
            )
            assert phoned is not None
            nodes[node_id] |= {
                "reset_to_phone_home": round(phoned.timestamp() - reset_at[node_id], 2),
                "phone_home_to_reboot_checked": round(
                    checked[node_id].timestamp() - phoned.timestamp(), 2
                ),
            }


async def _release_all(platform: Platform, ids: list[str], nodes: dict[str, Any]) -> None:
    """Release every node at once: each is cleaned (its agent boots and wipes its disk) before
    it is available. The request to the cleaning boot's power-on includes the soft power-off's
    grace period (the image ignores the ACPI button)."""
    await _agent_operation(
        platform, ids, nodes, "release", "clean",
        ("release_to_cleaning_power_on", "cleaning_power_on_to_report", "report_to_available"),
    )  # fmt: skip


async def _commission_all(platform: Platform, ids: list[str], nodes: dict[str, Any]) -> None:
    """Commission every (clean, available) node again at once: its agent boots, inspects it
    and runs the burn-in (memtester)."""
    await _agent_operation(
        platform, ids, nodes, "commission", "inspect",
        ("commission_to_power_on", "inspection_power_on_to_report",
         "inspection_report_to_available"),
    )  # fmt: skip


async def _agent_operation(
    platform: Platform, ids: list[str], nodes: dict[str, Any], operation: str, task: str,
    keys: tuple[str, str, str],
) -> None:  # fmt: skip
    """Start `operation` on every node at once and wait for each workflow's end; add to each
    node, under `keys`, the seconds from the request to the agent boot's power-on, from that
    power-on to the agent's report (the guest's time), and from the report to `available`."""
    requested: dict[str, float] = {}
    handles = []
    async with platform.api() as api:
        for node_id in ids:
            requested[node_id] = time.time()
            reply = await api.post(f"/v1/nodes/{node_id}/{operation}")
            reply.raise_for_status()
            accepted = reply.json()
            handles.append(
                platform.client.get_workflow_handle(
                    accepted["workflow_id"], run_id=accepted["run_id"]
                )
            )
    async with asyncio.timeout(900):  # an available node is so before the claim: wait the end
        await asyncio.gather(*(handle.result() for handle in handles))
    async with platform.sessions() as session:
        for node_id in ids:
            reported = await session.scalar(
                select(BootSession.used_at)
                .where(BootSession.node_id == node_id, BootSession.task == task)
                .order_by(BootSession.created_at.desc())
                .limit(1)
            )
            available = await session.scalar(
                select(Event.at)
                .where(Event.resource_id == node_id, Event.to_state == "available")
                .order_by(Event.id.desc())
            )
            if reported is None or available is None or available < reported:
                nodes[node_id][f"{operation}_failed"] = True
                continue
            # The lab keeps the last power-on: the agent boot's (it powers off after).
            power_on = float((await platform.lab_node(node_id))["powered_on_at"])
            to_power_on, to_report, to_available = keys
            nodes[node_id] |= {
                to_power_on: round(power_on - requested[node_id], 2),
                to_report: round(reported.timestamp() - power_on, 2),
                to_available: round(available.timestamp() - reported.timestamp(), 2),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=2, help="QEMU nodes (each ~0.7 GB RSS)")
    args = parser.parse_args()
    result = asyncio.run(run(args.nodes))
    save(result, f"qemu-boot-{args.nodes}")


if __name__ == "__main__":
    main()
