"""The power-state sync's work (the activities are BaremetalActivities' list_nodes_for_power_sync
and sync_power_states): list the nodes to read, and read a batch of them through their BMCs (at
most `concurrency` at once), judging each reading against the inventory's record
(inventory/power.py).

A BMC that does not answer is a finding, not an activity failure: the batch goes on and the
node's count of failed reads grows. Running a batch twice changes nothing the second time:
the first run left each record equal to its reading (or restored the node to its record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.contracts import PowerSyncSummary
from drivers.bmc.base import BmcDriver, BmcError, PowerState
from inventory import power
from inventory.errors import InventoryError

from .heartbeat import beating, piece


@dataclass
class PowerSyncBatch:
    node_ids: list[str]
    policy: str  # inventory.power.PowerPolicy
    unreachable_after: int


log = logging.getLogger("metalplane.power_sync")
DriverFor = Callable[[str], Awaitable[BmcDriver]]  # a node's BMC driver (InventoryError)


async def list_nodes(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return await power.nodes_to_sync(session)


async def sync_batch(
    sessions: async_sessionmaker[AsyncSession], driver_for: DriverFor, batch: PowerSyncBatch,
    *, concurrency: int,
) -> PowerSyncSummary:  # fmt: skip
    """Read, judge and record each node of the batch; restore drifted ones by policy."""
    policy = power.PowerPolicy(batch.policy)
    limit = asyncio.Semaphore(concurrency)
    done = 0

    async def one(node_id: str) -> PowerSyncSummary:
        nonlocal done
        async with limit:
            found = await _sync_one(sessions, driver_for, node_id, policy, batch.unreachable_after)
        done += 1
        return found

    async with beating(lambda: done):  # the nodes done so far, for the Web UI
        found = await asyncio.gather(*(one(node_id) for node_id in batch.node_ids))
    summary = PowerSyncSummary()
    for each in found:
        summary = summary.plus(each)
    return summary


async def _sync_one(
    sessions: async_sessionmaker[AsyncSession], driver_for: DriverFor, node_id: str,
    policy: power.PowerPolicy, unreachable_after: int,
) -> PowerSyncSummary:  # fmt: skip
    try:
        async with sessions() as session:
            record = await power.get_record(session, node_id)
        if record.held:
            return PowerSyncSummary(skipped=1)
        driver = await driver_for(node_id)
    except InventoryError:  # deleted since it was listed
        return PowerSyncSummary(skipped=1)
    try:
        reading: str | None = (await driver.get_power_state()).value
        error = ""
    except BmcError as exc:
        reading, error = None, f"{type(exc).__name__}: {exc}"
        log.warning("power sync: the BMC of %s did not answer: %s", node_id, error)
    try:
        verdict = power.judge(
            record, reading, error, policy=policy, unreachable_after=unreachable_after
        )
        async with sessions.begin() as session:
            if not await power.apply(session, record, verdict):
                return PowerSyncSummary(skipped=1)
        summary = _summary(node_id, record, verdict)
        if verdict.restore_to is not None:
            assert reading is not None  # a restore follows a reading that differs
            restored = await _restore(sessions, driver, node_id, reading, verdict.restore_to)
            summary = summary.plus(restored)
        return summary
    finally:
        await driver.close()


async def _restore(
    sessions: async_sessionmaker[AsyncSession], driver: BmcDriver, node_id: str, found: str,
    wanted: str,
) -> PowerSyncSummary:  # fmt: skip
    """Power the node back to its record, unless an operation claimed it meanwhile."""
    async with sessions() as session:
        if (await power.get_record(session, node_id)).held:
            return PowerSyncSummary()
    try:  # one piece: a cancel lets a power command finish rather than cut it
        if wanted == PowerState.ON:
            await piece(driver.power_on())
        else:
            await piece(driver.power_off())
    except BmcError as exc:
        event = power.PowerEvent(found, found, f"restoring {wanted} failed: {exc}")
        async with sessions.begin() as session:
            power.record_event(session, node_id, event)
        return PowerSyncSummary(restore_failed=[node_id])
    async with sessions.begin() as session:
        power.record_event(
            session, node_id, power.PowerEvent(found, wanted, "restored by the power sync")
        )
    return PowerSyncSummary(restored=[node_id])


def _summary(node_id: str, record: power.PowerRecord, verdict: power.Verdict) -> PowerSyncSummary:
    failed = verdict.bmc_failures > 0
    return PowerSyncSummary(
        checked=1,
        failed_reads=[node_id] if failed else [],
        drifted=[node_id] if verdict.drift else [],
        unreachable=[node_id] if verdict.unreachable and not record.unreachable else [],
        answering_again=[node_id] if record.unreachable and not verdict.unreachable else [],
    )
