"""SyncPowerStates: the power-state sync, started by the `power-sync` Temporal Schedule.

Runbook: list the nodes no operation holds; read each one's power through its BMC, a batch of
nodes per activity (the activity bounds the BMC reads in flight); record drift as a `power`
event and act by policy (report it, or restore the recorded state); flag a node whose BMC stops
answering, and clear the flag when it answers. The result names the nodes of each finding.

Nothing is claimed, so there is nothing to undo: a failed run is retried by the next schedule
tick or an SRE's reset, and reads again (each batch is safe to run twice). The schedule skips
a tick while a run is still going.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import BaremetalActivities
    from activities.power_sync import PowerSyncBatch
    from core.contracts import SYNC_POWER_STATES, PowerSyncSummary, SyncPowerStatesInput
    from workflows.cancellation import step
    from workflows.operation import nothing_to_undo, operation
    from workflows.steps import DEVICE_RETRY, RECORD_RETRY

LIST_TIMEOUT = timedelta(seconds=60)
BATCH_TIMEOUT = timedelta(minutes=30)  # a batch of dead BMCs each waits out its timeout
BATCH_HEARTBEAT = timedelta(seconds=20)


@workflow.defn(name=SYNC_POWER_STATES)
class SyncPowerStates:
    @workflow.run
    async def run(self, request: SyncPowerStatesInput) -> PowerSyncSummary:
        return await operation(
            self._steps(request), nothing_to_undo, failure_type="PowerSyncFailed"
        )

    async def _steps(self, request: SyncPowerStatesInput) -> PowerSyncSummary:
        node_ids = await step(
            BaremetalActivities.list_nodes_for_power_sync,
            start_to_close_timeout=LIST_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )
        summary = PowerSyncSummary()
        for start in range(0, len(node_ids), request.batch_size):
            batch = PowerSyncBatch(
                node_ids[start : start + request.batch_size],
                request.policy,
                request.unreachable_after,
            )
            found = await step(
                BaremetalActivities.sync_power_states, batch,
                start_to_close_timeout=BATCH_TIMEOUT, heartbeat_timeout=BATCH_HEARTBEAT,
                retry_policy=DEVICE_RETRY,
            )  # fmt: skip
            summary = summary.plus(found)
        return summary
