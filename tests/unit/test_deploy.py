"""Direct deploy's activities on a real PostgreSQL: the deploy boot's and the disk boot's
sessions, the judgement of the agent's report (the SHA-256 the disk holds against the
store's, a bootloader installed), and each activity run twice changing nothing the second
time."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

import images
from activities.inventory import ClaimProvision, InventoryActivities, OpenDeploy, RecordDeploy
from core.facts import DeployReport
from inventory import nodes
from inventory.models import BootSession, Event
from tests.db import migrated_sessions
from tests.unit.test_inventory import new_node

IMAGE = "lab-qemu-disk"
DISK_IMAGE = b"an ext2 filesystem, as far as this test cares\n" * 1000

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_deploy_unit") as sessions:
        yield sessions


def activities(sessions: async_sessionmaker[AsyncSession], store_dir: Path) -> InventoryActivities:
    images.materialize_lab_artifacts(store_dir)
    store = images.ImageStore(store_dir)
    path = store.artifact_path(images.get_image(IMAGE), "root.img")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(DISK_IMAGE)
    return InventoryActivities(
        sessions, store=store, boot_session_ttl=timedelta(minutes=5), agent_image="lab-sim"
    )


def report(**changes: object) -> dict:
    deployed = DeployReport(
        device="/dev/vda", image_url="http://boot/artifacts/lab-qemu-disk/root.img",
        sha256=hashlib.sha256(DISK_IMAGE).hexdigest(), bootloader="extlinux 6.04",
    ).model_copy(update=changes)  # fmt: skip
    return {"kernel_cmdline": "x", "deploy": deployed.model_dump(mode="json")}


async def _claimed(
    acts: InventoryActivities, node_id: str, mac: str,
    sessions: async_sessionmaker[AsyncSession],
) -> str:  # fmt: skip
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node(node_id, mac))
    wid = f"node/{node_id}"
    await acts.claim_node_for_provision(ClaimProvision(node_id, wid, IMAGE, str(uuid.uuid4())))
    return wid


async def test_each_deploy_activity_run_twice_changes_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    acts = activities(sessions, tmp_path)
    wid = await _claimed(acts, "n-deploy", "02:00:00:00:08:01", sessions)
    deploy_id, disk_id = str(uuid.uuid4()), str(uuid.uuid4())

    plans = [await acts.open_deploy_boot(OpenDeploy("n-deploy", wid, deploy_id, IMAGE))]
    plans.append(await acts.open_deploy_boot(OpenDeploy("n-deploy", wid, deploy_id, IMAGE)))
    assert plans[0] == plans[1] and plans[0].image == "lab-sim"  # the node's agent
    assert plans[0].tuning_profile == images.get_image(IMAGE).tuning_profile
    record = RecordDeploy("n-deploy", wid, deploy_id, IMAGE, report())
    assert await acts.record_deploy(record) == [] and await acts.record_deploy(record) == []
    for _ in range(2):
        await acts.open_disk_boot(OpenDeploy("n-deploy", wid, disk_id, IMAGE))
    async with sessions() as s:
        boots = list(
            await s.scalars(
                select(BootSession)
                .where(BootSession.node_id == "n-deploy")
                .order_by(BootSession.created_at)
            )
        )
        deployed = await s.scalar(
            select(func.count()).where(Event.reason.like("deployed %"), Event.workflow_id == wid)
        )
    by_id = {str(b.id): b for b in boots}
    assert (by_id[deploy_id].task, by_id[deploy_id].deploy_image) == ("deploy", IMAGE)
    assert by_id[deploy_id].closed_at is not None
    assert (by_id[disk_id].task, by_id[disk_id].image, by_id[disk_id].closed_at) == (
        None, IMAGE, None,
    )  # fmt: skip
    assert by_id[disk_id].kernel_sha256 is None  # not network booted: nothing to compare
    assert deployed == 1  # one event, not one per run


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"sha256": "0" * 64}, "/dev/vda holds SHA-256 " + "0" * 64 + "; lab-qemu-disk is "),
        ({"bootloader": None}, "no bootloader was installed on /dev/vda"),
        ({"error": "downloading failed: 404", "sha256": None},
         "deploying lab-qemu-disk to /dev/vda: downloading failed: 404"),
    ],
)  # fmt: skip
async def test_a_deploy_report_is_judged_against_the_store(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, changes: dict, problem: str
) -> None:
    acts = activities(sessions, tmp_path)
    node_id = f"n-judge-{uuid.uuid4().hex[:6]}"
    wid = await _claimed(acts, node_id, f"02:00:00:00:09:{len(problem) % 256:02x}", sessions)
    deploy_id = str(uuid.uuid4())
    await acts.open_deploy_boot(OpenDeploy(node_id, wid, deploy_id, IMAGE))
    (found,) = await acts.record_deploy(
        RecordDeploy(node_id, wid, deploy_id, IMAGE, report(**changes))
    )
    assert found.startswith(problem), found
    missing = await acts.record_deploy(
        RecordDeploy(node_id, wid, deploy_id, IMAGE, {"kernel_cmdline": "x"})
    )
    assert missing == ["the deploy boot phoned home without a deploy report"]


async def test_a_deploy_boot_is_opened_only_for_the_provision_holding_the_node(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    acts = activities(sessions, tmp_path)
    await _claimed(acts, "n-held", "02:00:00:00:0a:01", sessions)
    with pytest.raises(ApplicationError, match="not held by provision node/other") as raised:
        await acts.open_deploy_boot(OpenDeploy("n-held", "node/other", str(uuid.uuid4()), IMAGE))
    assert raised.value.non_retryable
