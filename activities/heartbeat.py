"""Heartbeats for activities that can run longer than a few seconds (a BMC power wait, a switch
session, an InfiniBand partition change): the workflow's heartbeat timeout then notices a lost
worker in seconds instead of at the end of the attempt's start-to-close timeout, and a
cancellation reaches the activity at its next heartbeat.

A piece of work that talks to a device is indivisible: a cancellation lets it finish (a command
half-sent to a BMC or a switch could land after the workflow's compensation otherwise), then
ends the activity as cancelled before its next piece starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")
EVERY_SECONDS = 2.0  # the workflows' heartbeat timeouts are several times this


async def _beat(every: float, details: Callable[[], object] | None) -> None:
    # The first beat after `every`: a piece that ends sooner costs no heartbeat RPC (each is
    # a write to Temporal's persistence; a 200-node provision burst paid for one per piece).
    while True:
        await asyncio.sleep(every)
        activity.heartbeat(*([details()] if details is not None else []))


@contextlib.asynccontextmanager
async def beating(
    details: Callable[[], object] | None = None, *, every: float = EVERY_SECONDS
) -> AsyncIterator[None]:
    """Heartbeat while the block runs (with `details()`, e.g. progress for the Web UI), when
    in an activity."""
    task = asyncio.create_task(_beat(every, details)) if activity.in_activity() else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def piece(work: Awaitable[T], *, every: float = EVERY_SECONDS) -> T:
    """Run `work` to its end while heartbeating; if the activity was cancelled meanwhile, raise
    CancelledError once it has ended (its result or failure is moot then)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    async with beating(every=every):
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                cancelled = True
    if cancelled:
        raise asyncio.CancelledError("the activity was cancelled; its piece of work ended first")
    return task.result()
