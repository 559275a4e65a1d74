"""How a workflow's cancellation meets the work in flight. Temporal delivers a workflow's
cancellation once, as asyncio cancellation of whatever the workflow awaits at that moment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """Run `work` (compensation) to its end even when the cancellation arrives meanwhile (a
    DELETE while a failure unwinds)."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise


async def step(activity: Callable[..., Awaitable[T]], *args: Any, **options: Any) -> T:
    """Run an activity as a step of a workflow: on the workflow's cancellation the activity is
    asked to stop (no further attempt) and its attempt in flight ends before the cancellation
    is raised. Otherwise a BMC or switch command still running could land after the
    compensation, or after the next run of an SRE's reset. `options` are execute_activity's."""
    task: asyncio.Future[T] = asyncio.ensure_future(
        workflow.execute_activity(
            activity,
            args=list(args),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            **options,
        )
    )
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        try:
            await task  # until the attempt in flight has ended; its outcome is moot
        except (ActivityError, asyncio.CancelledError):
            pass
        raise
