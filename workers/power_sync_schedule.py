"""The `power-sync` Temporal Schedule: it starts SyncPowerStates every
`power_sync_interval_seconds` with the policy of the settings. The bare-metal worker makes it
so at start (create, or update to the settings); an interval of 0 deletes it. An operator's
pause in the Web UI survives a worker restart. A tick while a run is still going is skipped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import POWER_SYNC_SCHEDULE_ID, SYNC_POWER_STATES, SyncPowerStatesInput
from core.settings import Settings


def power_sync_schedule(settings: Settings, task_queue: str) -> Schedule:
    every = timedelta(seconds=settings.power_sync_interval_seconds)
    request = SyncPowerStatesInput(
        policy=settings.power_sync_policy,
        unreachable_after=settings.power_sync_unreachable_after,
        batch_size=settings.power_sync_batch_size,
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SYNC_POWER_STATES, request, id=POWER_SYNC_SCHEDULE_ID, task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(  # Temporal's shortest catch-up window is 10 s
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, timedelta(seconds=10))
        ),
    )


async def ensure_power_sync_schedule(client: Client, settings: Settings, task_queue: str) -> None:
    handle = client.get_schedule_handle(POWER_SYNC_SCHEDULE_ID)
    if settings.power_sync_interval_seconds == 0:
        try:
            await handle.delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        return
    wanted = power_sync_schedule(settings, task_queue)
    try:
        await client.create_schedule(POWER_SYNC_SCHEDULE_ID, wanted)
        return
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        wanted.state = current.description.schedule.state  # keep an operator's pause
        return ScheduleUpdate(schedule=wanted)

    await handle.update(update)
