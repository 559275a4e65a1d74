"""The power-state sync on the lab's BMC simulators (IPMI and Redfish), through its Temporal
Schedule: the lab powers nodes behind the platform's back and the sync records the drift, by
policy restores the recorded state, flags a BMC that stops answering and clears the flag when
it answers; a sync with nothing new changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from core.contracts import TASK_QUEUE_BAREMETAL, PowerSyncSummary
from inventory.models import Event, Node
from tests.platform import Platform, Ports, running_platform
from workers.power_sync_schedule import ensure_power_sync_schedule

PORTS = Ports(api=18600, lab_control=18601, redfish=18602, ipmi_base=19880)
SYNC = {
    "power_sync_interval_seconds": 3600,  # the tests trigger each run
    "power_sync_unreachable_after": 2,
    "bmc_timeout_seconds": 3,  # a dropped BMC fails its read quickly
}

pytestmark = pytest.mark.timeout(240)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_power_sync", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("power_sync"), ports=PORTS, nodes=3,
        protocols="ipmi,redfish", extra_settings=SYNC,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        await ensure_power_sync_schedule(running.client, running.settings, TASK_QUEUE_BAREMETAL)
        yield running


async def sync_now(platform: Platform) -> PowerSyncSummary:
    return await (await platform.trigger_power_sync()).result()


async def node_row(platform: Platform, node_id: str) -> Node:
    async with platform.sessions() as session:
        node = await session.get(Node, node_id)
        assert node is not None
        return node


async def power_events(platform: Platform, node_id: str) -> list[tuple[Any, ...]]:
    async with platform.sessions() as session:
        rows = await session.execute(
            select(Event.from_state, Event.to_state, Event.reason)
            .where(Event.kind == "power", Event.resource_id == node_id)
            .order_by(Event.id)
        )
        return [tuple(row) for row in rows]


async def set_policy(platform: Platform, policy: str) -> None:
    platform.settings.power_sync_policy = policy  # type: ignore[assignment]
    await ensure_power_sync_schedule(platform.client, platform.settings, TASK_QUEUE_BAREMETAL)


async def test_the_first_sync_records_every_node_then_a_repeat_changes_nothing(
    platform: Platform,
) -> None:
    first = await sync_now(platform)
    assert first.checked == 3 and not first.drifted and first.failed_reads == [], first
    for node_id in ("lab-001", "lab-002", "lab-003"):
        assert (await node_row(platform, node_id)).power_state == "off"
        assert await power_events(platform, node_id) == []
    again = await sync_now(platform)
    assert again == PowerSyncSummary(checked=3), again
    assert await power_events(platform, "lab-001") == []


async def test_power_changed_behind_the_platforms_back_is_recorded_as_drift(
    platform: Platform,
) -> None:
    await set_policy(platform, "report")
    await platform.lab_put("/lab/nodes/lab-001/power", {"state": "on"})
    summary = await sync_now(platform)
    assert summary.drifted == ["lab-001"] and not summary.restored, summary
    assert (await node_row(platform, "lab-001")).power_state == "on"  # taken as found
    [(was, now, reason)] = await power_events(platform, "lab-001")
    assert (was, now) == ("off", "on") and "recorded as found" in reason
    assert (await platform.lab_node("lab-001"))["power"] == "on"  # left as it is
    assert (await sync_now(platform)).drifted == []  # reported once


async def test_the_restore_policy_powers_the_node_back_to_its_record(platform: Platform) -> None:
    await set_policy(platform, "restore")
    try:
        recorded = (await node_row(platform, "lab-002")).power_state
        assert recorded == "off"
        await platform.lab_put("/lab/nodes/lab-002/power", {"state": "on"})
        summary = await sync_now(platform)
        assert summary.drifted == ["lab-002"] and summary.restored == ["lab-002"], summary
        assert (await platform.lab_node("lab-002"))["power"] == "off"
        assert (await node_row(platform, "lab-002")).power_state == "off"
        events = await power_events(platform, "lab-002")
        assert [(was, now) for was, now, _ in events] == [("off", "on"), ("on", "off")], events
        assert "restoring off" in events[0][2] and "restored" in events[1][2]
        assert (await sync_now(platform)).restored == []  # nothing left to restore
    finally:
        await set_policy(platform, "report")


async def test_a_bmc_that_stops_answering_flags_the_node_until_it_answers(
    platform: Platform,
) -> None:
    await platform.set_faults("lab-003", drop_rate=1.0)
    try:
        first = await sync_now(platform)
        assert first.failed_reads == ["lab-003"] and first.unreachable == [], first  # no flag yet
        assert (await node_row(platform, "lab-003")).bmc_unreachable_since is None
        second = await sync_now(platform)
        assert second.unreachable == ["lab-003"], second
        flagged = await node_row(platform, "lab-003")
        assert flagged.bmc_unreachable_since is not None and flagged.power_state == "off"
        async with platform.api() as api:
            shown = (await api.get("/v1/nodes/lab-003")).json()
        assert shown["bmc_unreachable_since"] is not None and shown["power_state"] == "off"
        third = await sync_now(platform)
        assert third.unreachable == [] and third.failed_reads == ["lab-003"], third  # flagged once
    finally:
        await platform.set_faults("lab-003", drop_rate=0.0)
    for _ in range(5):  # a read begun during the outage may still hold the session a moment
        cleared = await sync_now(platform)
        if "lab-003" not in cleared.failed_reads:
            break
    assert cleared.answering_again == ["lab-003"] and cleared.failed_reads == [], cleared
    row = await node_row(platform, "lab-003")
    assert row.bmc_unreachable_since is None and row.bmc_failures == 0
    events = await power_events(platform, "lab-003")
    assert [(was, now) for was, now, _ in events] == [("off", "unknown"), ("unknown", "off")]
    assert "did not answer 2 reads in a row" in events[0][2]


async def test_an_operator_cancels_a_sync_in_flight(platform: Platform) -> None:
    await platform.set_faults("lab-001", delay_seconds=5.0)  # a slow BMC holds the batch
    try:
        handle = await platform.trigger_power_sync()
        await platform.wait_activity(handle.id, "sync_power_states")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, CancelledError), repr(info.value.cause)
    finally:
        await platform.set_faults("lab-001", delay_seconds=0.0)
    assert (await sync_now(platform)).checked == 3  # the next run reads every node again
