"""Cleaning's verdict and its activities: a node is clean only when every disk was wiped and
read back as zeros; the activities (on a real PostgreSQL) change nothing when run twice; the
cleaning boot's user-data carries nothing of the tenant's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import images
from activities.inventory import (
    ClaimRelease,
    FinishOperation,
    InventoryActivities,
    OpenCleaning,
    RecordClean,
)
from core.facts import CleanReport, DiskWipe
from inventory import cleaning, nodes
from inventory.models import BootSession, Event
from inventory.states import NodeState
from tests.db import migrated_sessions
from tests.unit.test_inventory import new_node

WIPED = DiskWipe(device="/dev/vda", size_bytes=64 * 2**20, method="discard", verified=True)


def report(*disks: DiskWipe) -> CleanReport:
    return CleanReport(disks=list(disks))


def test_a_clean_needs_every_disk_wiped_and_read_back_as_zeros() -> None:
    assert cleaning.problems(report(WIPED)) == []
    assert cleaning.problems(report()) == []  # a diskless node
    assert cleaning.problems(None) == ["the cleaning boot phoned home without a clean report"]
    failed = WIPED.model_copy(update={"device": "/dev/vdb", "method": None, "verified": False,
                                      "error": "the device is read-only"})  # fmt: skip
    dirty = WIPED.model_copy(update={"device": "/dev/vdc", "verified": False})
    nothing = WIPED.model_copy(update={"device": "/dev/vdd", "method": None, "verified": False})
    assert cleaning.problems(report(WIPED, failed, dirty, nothing)) == [
        "/dev/vdb: the device is read-only",
        "/dev/vdc: read back data after discard",
        "/dev/vdd: no wipe method worked",
    ]
    assert cleaning.summary(report(WIPED)) == "cleaned: /dev/vda (64 MiB, discard, verified)"
    assert cleaning.summary(report()) == "cleaned: the agent found no disks"


def test_the_cleaning_boots_user_data_names_the_task_and_no_tenant_keys() -> None:
    image = images.get_image("lab-qemu")
    text = images.render_user_data(
        image, image.profile, public_url="http://boot", node_id="n1", boot_session_id="s",
        token="t", task={"kind": "clean"},
    )  # fmt: skip
    doc = yaml.safe_load(text)
    assert doc["metalplane"]["task"] == {"kind": "clean"}
    assert "ssh_authorized_keys" not in doc and "mounts" not in doc


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_cleaning_unit") as sessions:
        yield sessions


@pytest.mark.asyncio(loop_scope="session")
async def test_each_cleaning_activity_run_twice_changes_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    images.materialize_lab_artifacts(tmp_path)
    acts = InventoryActivities(
        sessions, store=images.ImageStore(tmp_path), boot_session_ttl=timedelta(minutes=5),
        agent_image="lab-sim",
    )  # fmt: skip
    wid, session_id = "node/n-clean", str(uuid.uuid4())
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-clean", "02:00:00:00:07:01"))
        await nodes.claim_for_provision(s, "n-clean", workflow_id="p", image="lab-sim")
        await nodes.finish(
            s, "n-clean", workflow_id="p", operation="provision", to_state=NodeState.ACTIVE
        )
    await acts.claim_node_for_release(ClaimRelease("n-clean", wid))

    opened = [await acts.open_cleaning_boot(OpenCleaning("n-clean", wid, session_id))]
    opened.append(await acts.open_cleaning_boot(OpenCleaning("n-clean", wid, session_id)))
    assert opened[0] == opened[1] and opened[0].image == "lab-sim"
    facts = {"kernel_cmdline": "x", "clean": report(WIPED).model_dump(mode="json")}
    record = RecordClean("n-clean", wid, session_id, facts)
    assert await acts.record_clean(record) == [] and await acts.record_clean(record) == []
    finish = FinishOperation("n-clean", wid, "release", "available", cleaned=True)
    await acts.finish_operation(finish)
    await acts.finish_operation(finish)
    async with sessions() as s:
        boots = list(await s.scalars(select(BootSession).where(BootSession.node_id == "n-clean")))
        cleaned = await s.scalar(
            select(func.count()).where(Event.reason.like("cleaned:%"), Event.workflow_id == wid)
        )
        node = await nodes.get(s, "n-clean")
    assert [(b.task, b.closed_at is not None) for b in boots] == [("clean", True)]
    assert cleaned == 1  # one event, not one per run
    assert node.state == NodeState.AVAILABLE and not node.needs_cleaning


@pytest.mark.asyncio(loop_scope="session")
async def test_a_dirty_node_in_maintenance_is_not_returned_to_service_by_hand(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-dirty", "02:00:00:00:07:02"))
        await nodes.claim_for_provision(s, "n-dirty", workflow_id="p", image="lab-sim")
        await nodes.claim_for_release(s, "n-dirty", workflow_id="r")
        await nodes.finish(
            s, "n-dirty", workflow_id="r", operation="release", to_state=NodeState.MAINTENANCE,
            reason="cleaning: /dev/vda: the device is read-only",
        )  # fmt: skip
    async with sessions() as s:
        with pytest.raises(nodes.NodeNeedsCleaning):
            await nodes.leave_maintenance(s, "n-dirty", reason="by hand")
