"""Inventory worker: node claims, boot sessions, verification and state changes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

import images
from activities.inventory import InventoryActivities
from core.contracts import TASK_QUEUE_INVENTORY
from core.settings import Settings, get_settings
from inventory import skus
from inventory.db import session_factory

from .common import connect_temporal, inventory_engine, run_until_signalled


def make_activities(settings: Settings, sessions) -> InventoryActivities:  # type: ignore[no-untyped-def]
    return InventoryActivities(
        sessions,
        store=images.ImageStore(settings.images_dir),
        boot_session_ttl=timedelta(seconds=settings.boot_session_ttl_seconds),
        agent_image=settings.agent_image,
        sku_catalog=settings.sku_catalog or skus.CATALOG,
    )


def build_worker(
    client: Client, activities: InventoryActivities, settings: Settings, task_queue: str
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        activities=[
            activities.claim_node_for_provision,
            activities.verify_and_activate,
            activities.check_node_boot,
            activities.claim_node_for_release,
            activities.open_cleaning_boot,
            activities.claim_node_for_commission,
            activities.record_inspection,
            activities.record_clean,
            activities.open_deploy_boot,
            activities.record_deploy,
            activities.open_disk_boot,
            activities.claim_node_for_reboot,
            activities.claim_node_for_rescue,
            activities.claim_node_for_unrescue,
            activities.boots_so_far,
            activities.finish_operation,
        ],
        max_concurrent_activities=settings.inventory_max_concurrent_activities,
    )


async def main() -> None:
    settings = get_settings()
    engine = inventory_engine(settings)
    client = await connect_temporal(settings)
    worker = build_worker(
        client, make_activities(settings, session_factory(engine)), settings, TASK_QUEUE_INVENTORY
    )
    await run_until_signalled(worker, engine.dispose)


if __name__ == "__main__":
    asyncio.run(main())
