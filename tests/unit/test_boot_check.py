"""CheckNodeBoot's activity on a real PostgreSQL: a reboot of an active stateless node is
verified once per boot; drift fails the node, which keeps its boot session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import images
from activities.inventory import CheckBoot, InventoryActivities
from inventory import boot_sessions, nodes
from inventory.models import Event
from inventory.states import NodeState
from tests.db import migrated_sessions
from tests.unit.test_images_verify import INITRD_SHA, KERNEL_SHA, good_facts
from tests.unit.test_inventory import new_node

pytestmark = pytest.mark.asyncio(loop_scope="session")
MAC = "02:00:00:00:05:01"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_boot_check") as sessions:
        yield sessions


async def _active_node(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    """n-check provisioned and verified, its session kept open (a stateless image)."""
    session_id = uuid.uuid4()
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-check", MAC))
        await nodes.claim_for_provision(s, "n-check", workflow_id="node/n-check", image="lab-sim")
        await boot_sessions.open_session(
            s, session_id=session_id, node_id="n-check", workflow_id="node/n-check",
            image="lab-sim", kernel_args=[], kernel_sha256=KERNEL_SHA, initrd_sha256=INITRD_SHA,
            ttl=timedelta(minutes=5),
        )  # fmt: skip
        await boot_sessions.keep_open(s, session_id)
        await nodes.finish(
            s, "n-check", workflow_id="node/n-check", operation="provision",
            to_state=NodeState.ACTIVE,
        )  # fmt: skip
    return session_id


async def _reboot(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The node's OS posts its boot start, then fetches that boot's user-data, once."""
    async with sessions.begin() as s:
        boot = await boot_sessions.start_boot(s, MAC)
        assert boot is not None
        handed = await boot_sessions.hand_out_user_data(s, boot.id)
        assert handed is not None and handed.user_data_boot == boot.boots
        assert await boot_sessions.hand_out_user_data(s, boot.id) is None
        return boot.boots


async def test_each_reboot_is_checked_once_and_drift_fails_the_node(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    session_id = await _active_node(sessions)
    checks = InventoryActivities(
        sessions, store=images.ImageStore(tmp_path), boot_session_ttl=timedelta(minutes=5)
    )

    def check(boot: int, **drift: object) -> CheckBoot:
        facts = good_facts(**drift).model_dump(mode="json")
        return CheckBoot("n-check", f"node-boot/n-check/{boot}", str(session_id), boot, facts)

    boot = await _reboot(sessions)
    assert await checks.check_node_boot(check(boot)) == f"boot {boot}: tuning verified"
    assert await checks.check_node_boot(check(boot)) == f"boot {boot} was already checked"
    async with sessions() as s:
        assert (await nodes.get(s, "n-check")).state == NodeState.ACTIVE
        reasons = list(
            await s.scalars(select(Event.reason).where(Event.workflow_id.like("node-boot/%")))
        )
    assert reasons == [f"rebooted (boot {boot}); tuning verified"]  # one event per boot

    boot = await _reboot(sessions)  # this boot came up without its 1 GiB pages
    verdict = await checks.check_node_boot(check(boot, hugepages={"1048576": 0}))
    assert verdict.startswith(f"after a reboot (boot {boot}): tuning verification failed:")
    assert "huge pages 1G: expected 16, got 0" in verdict
    async with sessions() as s:
        node = await nodes.get(s, "n-check")
        assert node.state == NodeState.FAILED and node.last_error == verdict
        assert node.facts["hugepages"] == {"1048576": 0}  # what the node reported
        # Its session stays: the node can still boot (a failed check is no reason to strand it).
        assert await boot_sessions.open_session_by_mac(s, MAC) is not None
    # The check of a boot that raced the failure changes nothing on a node no longer active.
    assert await checks.check_node_boot(check(boot + 1)) == (
        f"boot {boot + 1}: node is failed; nothing to check"
    )
