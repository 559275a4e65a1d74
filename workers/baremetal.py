"""Bare-metal worker: the node lifecycle workflows and the BMC activities.

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
from inventory.db import session_factory
from workflows.node import ProvisionNode, ReleaseNode

from .common import connect_temporal, inventory_engine, run_until_signalled


def build_worker(
    client: Client, activities: BaremetalActivities, settings: Settings, task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ProvisionNode, ReleaseNode],
        activities=[
            activities.ensure_power,
            activities.ensure_boot_device,
            activities.ensure_bios,
        ],
        max_concurrent_activities=settings.baremetal_max_concurrent_activities,
    )


def make_activities(settings: Settings, sessions) -> BaremetalActivities:  # type: ignore[no-untyped-def]
    return BaremetalActivities(
        sessions,
        bmc_timeout=settings.bmc_timeout_seconds,
        max_concurrent_per_host=settings.bmc_max_concurrent_per_host,
    )


async def main() -> None:
    settings = get_settings()
    engine = inventory_engine(settings)
    client = await connect_temporal(settings)
    activities = make_activities(settings, session_factory(engine))
    worker = build_worker(client, activities, settings, TASK_QUEUE_BAREMETAL)
    await run_until_signalled(worker, engine.dispose)


if __name__ == "__main__":
    asyncio.run(main())
