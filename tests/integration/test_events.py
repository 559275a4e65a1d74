"""Live status: GET /v1/events as a WebSocket and as Server-Sent Events, fed by the workflows'
progress; each caller sees only what it may read; resume replays what was missed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from sqlalchemy import func, select, text

from inventory.models import AuditEntry
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18280, lab_control=18380, redfish=18381, ipmi_base=19680)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_events", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("events"), ports=PORTS, nodes=1,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        yield running


def ws_url(platform: Platform, query: str = "") -> str:
    return platform.api_url.replace("http://", "ws://") + "/v1/events" + query


async def next_json(socket: websockets.ClientConnection, timeout: float = 60) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse a text/event-stream into {id, event, data} dicts (comments skipped)."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


async def test_operator_sees_a_provision_live_over_websocket(platform: Platform) -> None:
    headers = {"Authorization": f"Bearer {platform.token}"}
    async with websockets.connect(ws_url(platform, "?kind=node"), additional_headers=headers) as ws:
        async with platform.api() as api:
            reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-sim"})
            assert reply.status_code == 202, reply.text
        claimed = await next_json(ws)
        assert (claimed["kind"], claimed["resource_id"]) == ("node", "lab-001")
        assert (claimed["from_state"], claimed["to_state"]) == ("available", "provisioning")
        assert claimed["workflow_id"] == reply.json()["workflow_id"]
        done = await next_json(ws)
        assert (done["from_state"], done["to_state"]) == ("provisioning", "active")
        assert done["id"] > claimed["id"]

    # The browser form: the token as a subprotocol, echoed back on accept.
    async with websockets.connect(
        ws_url(platform, f"?kind=node&after={claimed['id'] - 1}"),
        subprotocols=[websockets.Subprotocol(f"bearer.{platform.token}")],
    ) as ws:
        assert ws.subprotocol == f"bearer.{platform.token}"
        replayed = [await next_json(ws), await next_json(ws)]
        assert [e["id"] for e in replayed] == [claimed["id"], done["id"]]


async def test_callers_see_only_what_they_may_read_and_resume_over_sse(
    platform: Platform,
) -> None:
    admin = platform.mint("platform-admin", subject="root")
    acme_member = platform.mint("tenant-member", tenant="acme", subject="ann")
    async with (
        httpx.AsyncClient(base_url=platform.api_url, timeout=60) as http,
        http.stream(
            "GET", "/v1/events", headers={"Authorization": f"Bearer {acme_member}"}
        ) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async with platform.api(admin) as api:
            for tenant_id in ("globex", "acme"):  # globex first: ann must not see it
                created = await api.post(
                    "/v1/tenants", json={"id": tenant_id, "display_name": tenant_id}
                )
                assert created.status_code == 201, created.text
            await api.patch("/v1/tenants/acme", json={"state": "suspended"})
        seen = sse_events(stream)
        first = await asyncio.wait_for(anext(seen), 30)
        second = await asyncio.wait_for(anext(seen), 30)
    assert first["event"] == "tenant" and json.loads(first["data"])["resource_id"] == "acme"
    assert json.loads(first["data"])["to_state"] == "active"
    suspended = json.loads(second["data"])
    assert (suspended["resource_id"], suspended["to_state"]) == ("acme", "suspended")

    # Resume: Last-Event-ID replays only what came after, still filtered for the caller.
    async with platform.api(admin) as api:
        await api.patch("/v1/tenants/acme", json={"state": "active"})
        await api.patch("/v1/tenants/globex", json={"state": "suspended"})
    headers = {"Authorization": f"Bearer {acme_member}", "Last-Event-ID": second["id"]}
    async with (
        httpx.AsyncClient(base_url=platform.api_url, timeout=60) as http,
        http.stream("GET", "/v1/events", headers=headers) as stream,
    ):
        resumed = await asyncio.wait_for(anext(sse_events(stream)), 30)
    event = json.loads(resumed["data"])
    assert int(resumed["id"]) > int(second["id"])
    assert (event["resource_id"], event["from_state"], event["to_state"]) == (
        "acme", "suspended", "active",
    )  # fmt: skip


async def test_stream_refuses_bad_tokens_and_ends_when_the_token_expires(
    platform: Platform,
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(platform)):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["type"].endswith("unauthorized")
    async with platform.api("not-a-jwt") as api:
        reply = await api.get("/v1/events")
    assert reply.status_code == 401 and reply.headers["content-type"] == "application/problem+json"
    async with platform.api() as api:
        bad_resume = await api.get("/v1/events", headers={"Last-Event-ID": "x"})
    assert bad_resume.status_code == 422

    short = platform.mint("platform-viewer", subject="brief", ttl_seconds=2)
    headers = {"Authorization": f"Bearer {short}"}
    async with websockets.connect(ws_url(platform), additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    async with platform.sessions() as session:
        decisions = await session.scalar(
            select(func.count()).where(
                AuditEntry.subject == "brief", AuditEntry.resource_kind == "event"
            )
        )
    assert decisions == 1  # the subscription is one audited decision


async def test_stream_survives_losing_its_database_listener(platform: Platform) -> None:
    admin = platform.mint("platform-admin", subject="root")
    headers = {"Authorization": f"Bearer {admin}"}
    async with websockets.connect(
        ws_url(platform, "?kind=tenant"), additional_headers=headers
    ) as ws:
        async with platform.sessions.begin() as session:
            killed = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query = 'LISTEN \"t_events.events\"'"
                )
            )
        assert killed == 1
        async with platform.api(admin) as api:  # during or after the reconnect: not lost
            created = await api.post("/v1/tenants", json={"id": "initech", "display_name": "I"})
            assert created.status_code == 201, created.text
        event = await next_json(ws)
    assert (event["resource_id"], event["to_state"]) == ("initech", "active")
