"""How a workflow's cancellation meets the work in flight. Temporal delivers a workflow's
cancellation once, as asyncio cancellation of whatever the workflow awaits at that moment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

T = TypeVar("T")

# The cancellation type of every activity awaited through attempt_in_flight_first.
WAIT_FOR_THE_ATTEMPT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


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


async def attempt_in_flight_first(step: Awaitable[T], keep: Callable[[T], None] | None = None) -> T:
    """Await `step`, an activity started with WAIT_CANCELLATION_COMPLETED: on cancellation it is
    asked to stop (no further attempt) and the attempt in flight ends before the cancellation
    is raised. Otherwise a BMC command still running could land after the compensation, or
    after the next run of an SRE's reset. `keep` gets the result of an attempt that succeeded
    all the same (what the compensation needs to know)."""
    task = asyncio.ensure_future(step)
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        try:
            ended = await task
        except (ActivityError, asyncio.CancelledError):
            pass
        else:
            if keep is not None:
                keep(ended)
        raise
    if keep is not None:
        keep(result)
    return result
