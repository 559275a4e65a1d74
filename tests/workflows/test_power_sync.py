"""SyncPowerStates: the nodes listed are read a batch per activity and the batches' findings
summed; a failing step fails the run (nothing to undo), a cancel stops the batch in flight."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.power_sync import PowerSyncBatch
from core.contracts import (
    SYNC_POWER_STATES,
    TASK_QUEUE_BAREMETAL,
    PowerSyncSummary,
    SyncPowerStatesInput,
)

from .conftest import Plane, failure

pytestmark = pytest.mark.timeout(30)

WID = "power-sync"


async def sync(plane: Plane, **options: object) -> WorkflowHandle:
    request = SyncPowerStatesInput(**{"batch_size": 2, **options})  # type: ignore[arg-type]
    return await plane.start(
        SYNC_POWER_STATES, request, id=WID, task_queue=TASK_QUEUE_BAREMETAL,
        result_type=PowerSyncSummary,
    )  # fmt: skip


def batch(*node_ids: str, policy: str = "report") -> tuple[str, PowerSyncBatch]:
    return ("sync_power_states", PowerSyncBatch(list(node_ids), policy, 3))


async def test_every_node_is_read_a_batch_at_a_time_and_the_findings_summed(plane: Plane) -> None:
    plane.doubles.returns(
        "sync_power_states",
        PowerSyncSummary(checked=2, drifted=["n2"], restored=["n2"], unreachable=["n1"]),
        when=lambda b: b.node_ids == ["n1", "n2"],
    )
    plane.doubles.returns(
        "sync_power_states",
        PowerSyncSummary(checked=1, skipped=1, failed_reads=["n3"], answering_again=["n4"]),
        when=lambda b: b.node_ids == ["n3", "n4"],
    )
    handle = await sync(plane, policy="restore")
    assert await handle.result() == PowerSyncSummary(
        checked=4, skipped=1, failed_reads=["n3"], drifted=["n2"], restored=["n2"],
        unreachable=["n1"], answering_again=["n4"],
    )  # fmt: skip
    assert plane.doubles.calls == [
        ("list_nodes_for_power_sync", None),
        batch("n1", "n2", policy="restore"),
        batch("n3", "n4", policy="restore"),
        batch("n5", policy="restore"),
    ]


async def test_no_nodes_no_reads(plane: Plane) -> None:
    plane.doubles.sync_nodes = []
    assert await (await sync(plane)).result() == PowerSyncSummary()
    assert plane.doubles.names() == ["list_nodes_for_power_sync"]


@pytest.mark.parametrize("step", ["list_nodes_for_power_sync", "sync_power_states"])
async def test_a_failing_step_fails_the_run_with_its_reason(plane: Plane, step: str) -> None:
    plane.doubles.fail(step, "the inventory is gone")
    cause = await failure(await sync(plane))
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.non_retryable) == ("PowerSyncFailed", True)
    assert "the inventory is gone" in cause.message
    assert plane.doubles.names()[-1] == step  # no step after the failing one


async def test_a_cancel_stops_the_batch_in_flight(plane: Plane) -> None:
    plane.doubles.block("sync_power_states", when=lambda b: b.node_ids == ["n3", "n4"])
    handle = await sync(plane)
    await plane.doubles.called("sync_power_states", lambda b: b.node_ids == ["n3", "n4"])
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.cancelled == [batch("n3", "n4")]
    assert plane.doubles.calls[-1] == batch("n3", "n4")  # n5 is never read
