"""Cluster worker: the tenant cluster workflows and their inventory activities."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.cluster import ClusterActivities
from core.contracts import TASK_QUEUE_CLUSTER
from core.settings import Settings, get_settings
from inventory.db import session_factory
from workflows.cluster import CreateCluster, DeleteCluster, ScaleCluster

from .common import connect_temporal, inventory_engine, run_until_signalled, workflow_runner

# What this task queue runs: its worker, and the replay test of tests/histories/.
WORKFLOWS = [CreateCluster, ScaleCluster, DeleteCluster]


def make_activities(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> ClusterActivities:
    return ClusterActivities(sessions, settings)


def build_worker(
    client: Client, activities: ClusterActivities, settings: Settings, task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            activities.begin_create,
            activities.begin_scale,
            activities.begin_delete,
            activities.plan,
            activities.members,
            activities.replace_member,
            activities.request_verification,
            activities.report,
            activities.choose_removals,
            activities.forget_member,
            activities.begin_network_delete,
            activities.finish,
            activities.fail,
            activities.finish_delete,
        ],
        max_concurrent_activities=settings.inventory_max_concurrent_activities,
    )


async def main() -> None:
    settings = get_settings()
    engine = inventory_engine(settings)
    client = await connect_temporal(settings)
    worker = build_worker(
        client, make_activities(settings, session_factory(engine)), settings, TASK_QUEUE_CLUSTER
    )
    await run_until_signalled(worker, engine.dispose)


if __name__ == "__main__":
    asyncio.run(main())
