"""What every worker entrypoint shares: settings, Temporal client, inventory engine, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from core.settings import Settings
from inventory.db import create_engine

log = logging.getLogger("metalplane.worker")


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


def workflow_runner() -> SandboxedWorkflowRunner:
    """Workflow code keeps no module state, so the sandbox may reuse the imported modules
    instead of re-importing them for every run (the bulk of a small workflow's CPU)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
    )


def inventory_engine(settings: Settings) -> AsyncEngine:
    if not settings.database_url:
        raise SystemExit("METALPLANE_DATABASE_URL is not set (metalplane up sets it for workers)")
    return create_engine(settings.database_url, schema=settings.database_schema)


async def run_until_signalled(worker: Worker, on_exit: Callable[[], Awaitable[None]]) -> None:
    """Run the worker until SIGINT/SIGTERM, then let in-flight tasks finish and shut down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        log.info("worker on task queue %s started", worker.task_queue)
        await stop.wait()
        log.info("worker on task queue %s stopping", worker.task_queue)
    await on_exit()
