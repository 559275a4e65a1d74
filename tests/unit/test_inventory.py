"""Inventory on a real PostgreSQL: guarded state changes, concurrent claims, boot tokens."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inventory import boot_sessions, nodes
from inventory.errors import NodeConflict, NodeNotFound
from inventory.models import BootSession, Cluster, Event, Tenant
from inventory.states import NodeState
from tests.db import migrated_sessions

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = b"test-secret"
TTL = timedelta(minutes=5)  # a boot's token lasts this long


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_inventory") as sessions:
        yield sessions


def new_node(node_id: str, mac: str) -> nodes.NewNode:
    return nodes.NewNode(
        id=node_id, vendor="Dell Inc.", model="R760xa", macs=[mac], bmc_protocol="ipmi",
        bmc_address="127.0.0.1:623", bmc_username="admin", bmc_password="secret",
    )  # fmt: skip


async def test_enroll_rejects_duplicate_id_and_mac(sessions: async_sessionmaker) -> None:
    async with sessions.begin() as s:
        node = await nodes.enroll(s, new_node("n-dup", "02:00:00:00:00:01"))
        assert "secret" not in repr(node)
    with pytest.raises(NodeConflict, match="already enrolled"):
        async with sessions.begin() as s:
            await nodes.enroll(s, new_node("n-dup", "02:00:00:00:00:02"))
    with pytest.raises(NodeConflict, match="MAC"):
        async with sessions.begin() as s:
            await nodes.enroll(s, new_node("n-other", "02:00:00:00:00:01"))


async def test_two_concurrent_claims_one_wins(sessions: async_sessionmaker) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-race", "02:00:00:00:01:01"))

    async def claim(workflow_id: str) -> str:
        async with sessions.begin() as s:
            await nodes.claim_for_provision(s, "n-race", workflow_id=workflow_id, image="lab-sim")
        return workflow_id

    results = await asyncio.gather(*(claim(f"wf-{i}") for i in range(8)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, NodeConflict) for r in results if not isinstance(r, str))
    # The holder may repeat its claim (a retried activity); nobody else may.
    async with sessions.begin() as s:
        again = await nodes.claim_for_provision(
            s, "n-race", workflow_id=winners[0], image="lab-sim"
        )
        assert again.state == NodeState.PROVISIONING


async def test_finish_is_only_for_the_holder_and_idempotent(sessions: async_sessionmaker) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-finish", "02:00:00:00:02:01"))
        await nodes.claim_for_provision(s, "n-finish", workflow_id="wf-a", image="lab-sim")
    with pytest.raises(NodeConflict):
        async with sessions.begin() as s:
            await nodes.finish(s, "n-finish", workflow_id="wf-b", operation="provision",
                               to_state=NodeState.ACTIVE)  # fmt: skip
    for _ in range(2):
        async with sessions.begin() as s:
            node = await nodes.finish(s, "n-finish", workflow_id="wf-a", operation="provision",
                                      to_state=NodeState.FAILED, reason="boom")  # fmt: skip
    assert node.state == "failed" and node.last_error == "boom"
    with pytest.raises(NodeNotFound):
        async with sessions.begin() as s:
            await nodes.claim_for_release(s, "missing", workflow_id="wf-x")


async def test_each_state_change_is_one_event_even_when_retried(
    sessions: async_sessionmaker,
) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-events", "02:00:00:00:09:01"))
    for _ in range(2):  # a retried activity changes nothing and records nothing
        async with sessions.begin() as s:
            await nodes.claim_for_provision(s, "n-events", workflow_id="wf-e", image="lab-sim")
    with pytest.raises(NodeConflict):  # a refused change records nothing either
        async with sessions.begin() as s:
            await nodes.claim_for_provision(s, "n-events", workflow_id="wf-f", image="lab-sim")
    async with sessions() as s:
        history = (
            await s.scalars(
                select(Event).where(Event.kind == "node", Event.resource_id == "n-events")
            )
        ).all()
    assert [(e.from_state, e.to_state, e.workflow_id) for e in history] == [
        (None, "available", None),
        ("available", "provisioning", "wf-e"),
    ]


async def test_each_boot_has_its_own_single_use_token(sessions: async_sessionmaker) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-boot", "02:00:00:00:03:01"))
    session_id = uuid.uuid4()
    for _ in range(2):  # opening the same session twice (a retried activity) is one session
        async with sessions.begin() as s:
            await boot_sessions.open_session(
                s, session_id=session_id, node_id="n-boot", workflow_id="wf", image="lab-sim",
                kernel_args=["iommu=pt"], kernel_sha256=None, initrd_sha256=None,
                ttl=timedelta(minutes=5),
            )  # fmt: skip
    token = boot_sessions.token_for(session_id, 1, SECRET)
    first = boot_sessions.boot_from_token(token, SECRET)
    assert first == boot_sessions.BootToken(session_id, 1)
    assert boot_sessions.boot_from_token(token, b"other-secret") is None
    assert boot_sessions.boot_from_token(token[:-2] + "xx", SECRET) is None
    forged = token.replace(".1.", ".2.")  # another boot's number under this boot's signature
    assert boot_sessions.boot_from_token(forged, SECRET) is None
    for malformed in (token.replace(".1.", ".\u00b2."), token + "\u0661", "x.y.z", ""):
        assert boot_sessions.boot_from_token(malformed, SECRET) is None  # refused, no crash
    legacy = boot_sessions.sign_id(session_id, SECRET)  # rendered before per-boot tokens
    assert boot_sessions.boot_from_token(legacy, SECRET) == boot_sessions.BootToken(session_id, 0)
    async with sessions.begin() as s:  # boot 1 has not started: its token is not current
        assert await boot_sessions.accept_phone_home(s, first, TTL) is None
    async with sessions.begin() as s:
        assert (await boot_sessions.start_boot(s, "02:00:00:00:03:01")).boots == 1
    async with sessions.begin() as s:
        assert await boot_sessions.accept_phone_home(s, first, TTL) is not None
    async with sessions.begin() as s:  # spent
        assert await boot_sessions.accept_phone_home(s, first, TTL) is None
    async with sessions.begin() as s:  # a reboot: a new token, and only it counts
        assert (await boot_sessions.start_boot(s, "02:00:00:00:03:01")).boots == 2
        assert (await boot_sessions.start_boot(s, "02:00:00:00:03:01")).boots == 3
    stale = boot_sessions.BootToken(session_id, 2)  # boot 2 never phoned home: now stale
    async with sessions.begin() as s:
        assert await boot_sessions.accept_phone_home(s, stale, TTL) is None
        accepted = await boot_sessions.accept_phone_home(
            s, boot_sessions.BootToken(session_id, 3), TTL
        )
        assert accepted is not None and accepted.phoned_home_boot == 3
    async with sessions.begin() as s:  # a boot's token lasts the TTL from the boot's start
        assert (await boot_sessions.start_boot(s, "02:00:00:00:03:01")).boots == 4
    fourth = boot_sessions.BootToken(session_id, 4)
    async with sessions.begin() as s:
        assert await boot_sessions.accept_phone_home(s, fourth, timedelta(0)) is None
        booted = await boot_sessions.get_session(s, session_id)
        assert booted is not None and not boot_sessions.is_current_boot(
            booted, fourth, timedelta(0)
        )
        assert boot_sessions.is_current_boot(booted, fourth, TTL)
        assert await boot_sessions.accept_phone_home(s, fourth, TTL) is not None
    async with sessions.begin() as s:  # checked once per boot
        assert await boot_sessions.check_boot(s, boot_sessions.BootToken(session_id, 3))
        assert await boot_sessions.check_boot(s, boot_sessions.BootToken(session_id, 3)) is None
    async with sessions.begin() as s:  # a stateless node's session does not expire
        await boot_sessions.keep_open(s, session_id)
        kept = await boot_sessions.open_session_by_mac(s, "02:00:00:00:03:01")
        assert kept is not None and kept.expires_at is None and boot_sessions.is_open(kept)
    async with sessions.begin() as s:  # until it is closed (release)
        await boot_sessions.close_sessions(s, "n-boot")
        assert await boot_sessions.start_boot(s, "02:00:00:00:03:01") is None


async def test_a_new_boot_session_closes_the_old_one(sessions: async_sessionmaker) -> None:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node("n-reboot", "02:00:00:00:04:01"))
    first, second = uuid.uuid4(), uuid.uuid4()
    for session_id in (first, second):
        async with sessions.begin() as s:
            await boot_sessions.open_session(
                s, session_id=session_id, node_id="n-reboot", workflow_id="wf", image="lab-sim",
                kernel_args=[], kernel_sha256=None, initrd_sha256=None, ttl=timedelta(minutes=5),
            )  # fmt: skip
    async with sessions.begin() as s:
        assert await boot_sessions.start_boot(s, "02:00:00:00:04:01") is not None
        assert (
            await boot_sessions.accept_phone_home(s, boot_sessions.BootToken(first, 1), TTL) is None
        )
        open_ids = await s.scalars(
            select(BootSession.id).where(
                BootSession.node_id == "n-reboot", BootSession.closed_at.is_(None)
            )
        )
        assert list(open_ids) == [second]


async def _session_for(
    sessions: async_sessionmaker, node_id: str, mac: str, *, tenant: str | None = None
) -> uuid.UUID:
    async with sessions.begin() as s:
        await nodes.enroll(s, new_node(node_id, mac))
    session_id = uuid.uuid4()
    async with sessions.begin() as s:
        await boot_sessions.open_session(
            s, session_id=session_id, node_id=node_id, workflow_id=f"node/{node_id}",
            image="lab-sim", kernel_args=[], kernel_sha256=None, initrd_sha256=None, ttl=TTL,
        )  # fmt: skip
    return session_id


async def test_a_boots_user_data_and_secrets_are_handed_out_once(
    sessions: async_sessionmaker,
) -> None:
    mac = "02:00:00:00:06:01"
    session_id = await _session_for(sessions, "n-once", mac)
    async with sessions.begin() as s:  # boot 0: a node that booted before an upgrade, once
        handed = await boot_sessions.hand_out_user_data(s, session_id)
        assert handed is not None and handed.boots == 0 and handed.user_data_boot == 0
        assert await boot_sessions.hand_out_user_data(s, session_id) is None
    async with sessions.begin() as s:
        assert (await boot_sessions.start_boot(s, mac)).boots == 1
    for _ in range(2):  # reads change nothing: the open session is found, not counted
        async with sessions.begin() as s:
            assert (await boot_sessions.open_session_by_mac(s, mac)).boots == 1
    async with sessions.begin() as s:  # boot 1's user-data: once
        assert (await boot_sessions.hand_out_user_data(s, session_id)).user_data_boot == 1
        assert await boot_sessions.hand_out_user_data(s, session_id) is None
    first = boot_sessions.BootToken(session_id, 1)
    async with sessions.begin() as s:  # its cluster secrets: once, for the current boot only
        assert (
            await boot_sessions.hand_out_secrets(s, boot_sessions.BootToken(session_id, 0), TTL)
            is None
        )
        assert await boot_sessions.hand_out_secrets(s, first, timedelta(0)) is None  # too old
        assert (await boot_sessions.hand_out_secrets(s, first, TTL)).secrets_boot == 1
        assert await boot_sessions.hand_out_secrets(s, first, TTL) is None
    async with sessions.begin() as s:  # the next boot gets its own, once each
        assert (await boot_sessions.start_boot(s, mac)).boots == 2
        assert await boot_sessions.hand_out_secrets(s, first, TTL) is None  # stale
        assert (await boot_sessions.hand_out_user_data(s, session_id)).user_data_boot == 2
        second = boot_sessions.BootToken(session_id, 2)
        assert (await boot_sessions.hand_out_secrets(s, second, TTL)).secrets_boot == 2
    async with sessions.begin() as s:  # a closed session hands out nothing
        await boot_sessions.close_sessions(s, "n-once")
        assert (await boot_sessions.start_boot(s, mac)) is None
        assert await boot_sessions.hand_out_user_data(s, session_id) is None


async def test_a_second_fetch_leaves_an_event_on_the_node(sessions: async_sessionmaker) -> None:
    session_id = await _session_for(sessions, "n-theft", "02:00:00:00:07:01")
    async with sessions.begin() as s:
        boot = await boot_sessions.get_session(s, session_id)
        assert boot is not None
        await boot_sessions.record_suspicious(s, boot, "boot 0's user-data was fetched twice")
    async with sessions() as s:
        event = await s.scalar(
            select(Event).where(Event.resource_id == "n-theft").order_by(Event.id.desc())
        )
    assert event is not None and event.kind == "node"
    assert (event.from_state, event.to_state) == ("available", "available")
    assert event.workflow_id == "node/n-theft" and event.tenant_id is None
    assert event.reason == "boot 0's user-data was fetched twice"


async def test_the_ca_key_goes_to_each_controller_node_once(sessions: async_sessionmaker) -> None:
    cluster_id = uuid.uuid4()
    async with sessions.begin() as s:
        s.add(Tenant(id="t-ca", display_name="CA"))
        await s.flush()
        s.add(
            Cluster(
                id=cluster_id, tenant_id="t-ca", name="k1", kind="kubernetes", node_count=1,
                gpu_model="H100 80GB HBM3", image="lab-sim",
            )
        )  # fmt: skip
    async with sessions.begin() as s:
        assert await boot_sessions.hand_out_ca_key(s, cluster_id, "n-head")
        assert not await boot_sessions.hand_out_ca_key(s, cluster_id, "n-head")  # its next boot
    async with sessions.begin() as s:  # a replacement controller: once too
        assert await boot_sessions.hand_out_ca_key(s, cluster_id, "n-spare")
        assert not await boot_sessions.hand_out_ca_key(s, cluster_id, "n-spare")
        assert (await s.get_one(Cluster, cluster_id)).ca_key_holder == "n-spare"


async def test_expiring_tokens_name_their_expiry_and_are_refused_when_forged() -> None:
    value, purpose = uuid.uuid4(), b"cluster-report"
    expires = int(time.time()) + 60
    token = boot_sessions.sign_expiring(value, SECRET, purpose, expires)
    signed = boot_sessions.expiring_id(token, SECRET, purpose)
    assert signed == boot_sessions.ExpiringId(value, expires) and not signed.expired(time.time())
    assert signed.expired(expires)
    assert boot_sessions.expiring_id(token, SECRET, b"boot") is None  # another purpose
    assert boot_sessions.expiring_id(token, b"other-secret", purpose) is None
    later = token.replace(f".{expires}.", f".{expires + 3600}.")  # a longer life, forged
    assert boot_sessions.expiring_id(later, SECRET, purpose) is None
    legacy = boot_sessions.sign_id(value, SECRET, b"cluster-report:")  # never expired: refused
    for bad in (legacy, "", "x.1.y", token + "\u0661", token.replace(f".{expires}.", ".-1.")):
        assert boot_sessions.expiring_id(bad, SECRET, purpose) is None
    boot = boot_sessions.token_for(value, 1, SECRET)  # a boot token is not a report token
    assert boot_sessions.expiring_id(boot, SECRET, purpose) is None
