"""The steps a workflow takes, by task queue: one table of timeouts, heartbeat timeouts and
retry policies, and a typed helper per queue (the activity's own result type comes back).

Every step runs through workflows.cancellation.step: on the workflow's cancellation the
activity is asked to stop and its attempt in flight ends before the cancellation is raised.
Device steps (BMC, switches, InfiniBand) heartbeat (activities/heartbeat.py): their heartbeat
timeout notices a lost worker in seconds, and a cancellation reaches them at their next beat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.common import RetryPolicy

from core.contracts import (
    TASK_QUEUE_BAREMETAL,
    TASK_QUEUE_CLUSTER,
    TASK_QUEUE_INVENTORY,
    TASK_QUEUE_NETWORK,
)
from workflows.cancellation import step

T = TypeVar("T")

DEVICE_RETRY = RetryPolicy(  # a BMC or a switch that does not answer may come back
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)
SWITCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)
RECORD_RETRY = RetryPolicy(  # the inventory: a lost connection or a lock timeout
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)


@dataclass(frozen=True)
class QueueOptions:
    start_to_close: timedelta
    retry: RetryPolicy
    heartbeat: timedelta | None = None  # the activities of the queue heartbeat


QUEUES: dict[str, QueueOptions] = {
    TASK_QUEUE_BAREMETAL: QueueOptions(
        timedelta(seconds=120), DEVICE_RETRY, heartbeat=timedelta(seconds=20)
    ),
    TASK_QUEUE_NETWORK: QueueOptions(
        timedelta(seconds=120), SWITCH_RETRY, heartbeat=timedelta(seconds=20)
    ),
    TASK_QUEUE_INVENTORY: QueueOptions(timedelta(seconds=30), RECORD_RETRY),
    TASK_QUEUE_CLUSTER: QueueOptions(timedelta(seconds=30), RECORD_RETRY),
}


async def _on(
    queue: str, activity: Callable[..., Awaitable[T]], args: tuple[Any, ...], *, own: bool,
    retry: RetryPolicy | None = None,
) -> T:  # fmt: skip
    options = QUEUES[queue]
    return await step(
        activity, *args,
        task_queue=None if own else queue,  # own: the workflow's queue, whatever its name
        start_to_close_timeout=options.start_to_close,
        heartbeat_timeout=options.heartbeat,
        retry_policy=retry or options.retry,
    )  # fmt: skip


async def bmc(activity: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A BMC step of a node workflow (they run on the bare-metal queue)."""
    return await _on(TASK_QUEUE_BAREMETAL, activity, args, own=True)


async def inventory(activity: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await _on(TASK_QUEUE_INVENTORY, activity, args, own=False)


async def fabric(activity: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A switch or InfiniBand step of a network workflow (on its own queue)."""
    return await _on(TASK_QUEUE_NETWORK, activity, args, own=True)


async def fabric_for_node(activity: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A network step of a node workflow: on the network queue, retried like a BMC step."""
    return await _on(TASK_QUEUE_NETWORK, activity, args, own=False, retry=DEVICE_RETRY)


async def cluster(activity: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A cluster workflow's record step (on its own queue)."""
    return await _on(TASK_QUEUE_CLUSTER, activity, args, own=True)
