"""workflows.cancellation on the session's Temporal server: a cancelled workflow's activity ends
its attempt in flight, and makes no further attempt, before the cancellation reaches the code
that compensates."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from workflows.cancellation import step

STEP_SECONDS = 1.5


@dataclass
class Record:
    """What the slow step did, in order: the test reads it after the workflow ended."""

    events: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)


RECORDS: dict[str, Record] = {}


@activity.defn
async def slow_step(run: str, fail: bool) -> str:
    record = RECORDS[run]
    record.events.append(f"attempt {activity.info().attempt}")
    record.started.set()
    await asyncio.sleep(STEP_SECONDS)  # no heartbeat: the attempt cannot see the cancel
    if fail:
        raise RuntimeError("the device did not answer")
    record.events.append("step done")
    return "configured"


@activity.defn
async def compensate(run: str) -> None:
    RECORDS[run].events.append("compensated")


@workflow.defn
class OneStep:
    @workflow.run
    async def run(self, run: str, fail: bool) -> str:
        try:
            return await step(
                slow_step, run, fail, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
            )  # fmt: skip
        except asyncio.CancelledError:
            await workflow.execute_activity(
                compensate, run, start_to_close_timeout=timedelta(seconds=30)
            )
            raise


async def _cancel_during_the_step(client: Client, queue: str, fail: bool) -> Record:
    run = str(uuid.uuid4())
    RECORDS[run] = record = Record()
    handle = await client.start_workflow(OneStep.run, args=[run, fail], id=run, task_queue=queue)
    await asyncio.to_thread(record.started.wait, 30)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    return record


async def test_a_cancel_waits_for_the_attempt_in_flight_and_stops_the_retries(
    temporal_address: str,
) -> None:
    client = await Client.connect(temporal_address)
    queue = f"cancellation-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[OneStep],
                      activities=[slow_step, compensate]):  # fmt: skip
        # The attempt succeeds after the cancel: it ends first, then the compensation runs.
        record = await _cancel_during_the_step(client, queue, fail=False)
        assert record.events == ["attempt 1", "step done", "compensated"]
        # The attempt fails after the cancel: no retry, the compensation runs after it.
        record = await _cancel_during_the_step(client, queue, fail=True)
        assert record.events == ["attempt 1", "compensated"]
