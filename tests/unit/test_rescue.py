"""Rescue's activities on a real PostgreSQL: each run twice changes nothing the second time,
the rescue boot is the agent's with the task `rescue`, and unrescue ends it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

import images
from activities.inventory import ClaimRescue, FinishOperation, InventoryActivities
from inventory import nodes
from inventory.models import BootSession, Event
from inventory.states import NodeState
from tests.db import migrated_sessions
from tests.unit.test_inventory import new_node

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_rescue_unit") as sessions:
        yield sessions


async def test_each_rescue_activity_run_twice_changes_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    images.materialize_lab_artifacts(tmp_path)
    acts = InventoryActivities(
        sessions, store=images.ImageStore(tmp_path), boot_session_ttl=timedelta(minutes=5),
        agent_image="lab-sim",
    )  # fmt: skip
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-rescue", "02:00:00:00:0b:01"))
        await nodes.claim_for_provision(s, "n-rescue", workflow_id="p", image="lab-sim")
        await nodes.finish(
            s, "n-rescue", workflow_id="p", operation="provision", to_state=NodeState.ACTIVE
        )
    wid, rescue_boot = "node/n-rescue", str(uuid.uuid4())
    claim = ClaimRescue("n-rescue", wid, rescue_boot)
    plans = [await acts.claim_node_for_rescue(claim), await acts.claim_node_for_rescue(claim)]
    assert plans[0] == plans[1] and plans[0].image == "lab-sim"
    finish = FinishOperation("n-rescue", wid, "rescue", "rescue")
    await acts.finish_operation(finish)
    await acts.finish_operation(finish)

    unrescue = ClaimRescue("n-rescue", "node/n-rescue-2", str(uuid.uuid4()))
    back = [await acts.claim_node_for_unrescue(unrescue)]
    back.append(await acts.claim_node_for_unrescue(unrescue))
    assert back[0] == back[1] and (back[0].device, back[0].boot_session_id) == ("disk", None)
    async with sessions() as s:
        boots = list(await s.scalars(select(BootSession).where(BootSession.node_id == "n-rescue")))
        states = list(
            await s.scalars(
                select(Event.to_state).where(Event.resource_id == "n-rescue").order_by(Event.id)
            )
        )
        node = await nodes.get(s, "n-rescue")
    assert [(b.task, b.image, b.closed_at is not None) for b in boots] == [
        ("rescue", "lab-sim", True)
    ]
    assert states[-3:] == ["rescuing", "rescue", "rebooting"]  # once each, not per run
    assert node.state == NodeState.REBOOTING and node.tenant_id is None


async def test_only_an_active_node_is_rescued(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    acts = InventoryActivities(
        sessions, store=images.ImageStore(tmp_path), boot_session_ttl=timedelta(minutes=5),
        agent_image="lab-sim",
    )  # fmt: skip
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-free", "02:00:00:00:0b:02"))
    with pytest.raises(ApplicationError, match="rescue needs one of: active") as raised:
        await acts.claim_node_for_rescue(ClaimRescue("n-free", "w", str(uuid.uuid4())))
    assert raised.value.non_retryable
