"""Network worker: the tenant network workflows and the switch and InfiniBand activities."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.network import NetworkActivities, SwitchOpener
from core.contracts import TASK_QUEUE_NETWORK
from core.settings import Settings, get_settings
from drivers.infiniband.base import PartitionManager
from inventory.db import session_factory
from workflows.network import AttachNode, CreateNetwork, DeleteNetwork, DetachNode

from .common import connect_temporal, inventory_engine, run_until_signalled, workflow_runner
from .fabric_drivers import open_switch_from_settings, partition_manager_from_settings

# What this task queue runs: its worker, and the replay test of tests/histories/.
WORKFLOWS = [CreateNetwork, DeleteNetwork, AttachNode, DetachNode]


def make_activities(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    open_switch: SwitchOpener | None = None,
    partitions: PartitionManager | None = None,
) -> NetworkActivities:
    if partitions is None:
        partitions = partition_manager_from_settings(settings)
    return NetworkActivities(
        sessions,
        settings,
        open_switch=open_switch or open_switch_from_settings(settings),
        partitions=partitions,
    )


def build_worker(
    client: Client, activities: NetworkActivities, settings: Settings, task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            activities.list_leaves,
            activities.ensure_network_on_switch,
            activities.remove_network_from_switch,
            activities.move_node_ports,
            activities.ensure_partition,
            activities.remove_partition,
            activities.add_node_to_partition,
            activities.remove_node_from_partition,
            activities.set_network_state,
            activities.finish_network_delete,
            activities.record_attachment,
            activities.mark_attached,
            activities.leave_tenant_network,
            activities.leave_network,
        ],
        max_concurrent_activities=settings.network_max_concurrent_activities,
    )


async def main() -> None:
    settings = get_settings()
    engine = inventory_engine(settings)
    client = await connect_temporal(settings)
    activities = make_activities(settings, session_factory(engine))
    worker = build_worker(client, activities, settings, TASK_QUEUE_NETWORK)
    await run_until_signalled(worker, engine.dispose)


if __name__ == "__main__":
    asyncio.run(main())
