"""Bare-metal worker: the node lifecycle workflows, the power-state sync (it keeps the sync's
Temporal Schedule as its settings say) and the BMC activities.

max_concurrent_activities bounds the BMC calls in flight from this process; the drivers
additionally limit calls per BMC host.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.worker import Worker

from activities.baremetal import BaremetalActivities
from core.contracts import TASK_QUEUE_BAREMETAL
from core.settings import Settings, get_settings
from drivers.bmc.redfish import close_pooled_sessions
from inventory.db import session_factory
from workflows.node import ProvisionNode, ReleaseNode
from workflows.node_boot import CheckNodeBoot
from workflows.node_commission import CommissionNode
from workflows.node_reboot import RebootNode
from workflows.node_rescue import RescueNode, UnrescueNode
from workflows.power_sync import SyncPowerStates

from .common import connect_temporal, inventory_engine, run_until_signalled, workflow_runner
from .power_sync_schedule import ensure_power_sync_schedule

# What this task queue runs: its worker, and the replay test of tests/histories/.
WORKFLOWS = [
    ProvisionNode, ReleaseNode, RebootNode, CheckNodeBoot, CommissionNode, RescueNode,
    UnrescueNode, SyncPowerStates,
]  # fmt: skip


def build_worker(
    client: Client, activities: BaremetalActivities, settings: Settings, task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            activities.ensure_power,
            activities.ensure_boot_device,
            activities.prepare_network_boot,
            activities.read_bmc_firmware,
            activities.list_nodes_for_power_sync,
            activities.sync_power_states,
        ],
        max_concurrent_activities=settings.baremetal_max_concurrent_activities,
    )


def make_activities(settings: Settings, sessions) -> BaremetalActivities:  # type: ignore[no-untyped-def]
    return BaremetalActivities(
        sessions,
        bmc_timeout=settings.bmc_timeout_seconds,
        max_concurrent_per_host=settings.bmc_max_concurrent_per_host,
        power_sync_concurrency=settings.power_sync_concurrency,
    )


async def main() -> None:
    settings = get_settings()
    engine = inventory_engine(settings)
    client = await connect_temporal(settings)
    activities = make_activities(settings, session_factory(engine))
    worker = build_worker(client, activities, settings, TASK_QUEUE_BAREMETAL)
    await ensure_power_sync_schedule(client, settings, TASK_QUEUE_BAREMETAL)

    async def on_exit() -> None:
        await close_pooled_sessions()
        await engine.dispose()

    await run_until_signalled(worker, on_exit)


if __name__ == "__main__":
    asyncio.run(main())
