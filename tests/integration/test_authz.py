"""Authorization through the API: roles decide, denials are 403 problem+json, every decision
is in the audit log with the request id, and only platform admins read that log. The API runs
on the smallest pool (one connection and one overflow): a request uses one connection at a time,
so a burst larger than the pool waits its turn instead of deadlocking it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from api.ratelimit import TokenBuckets
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18260, lab_control=18360, redfish=18361, ipmi_base=19660)


@pytest_asyncio.fixture(scope="module")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_authz", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("authz"), ports=PORTS, nodes=1,
        extra_settings={"api_database_pool_size": 1},
    ) as running:  # fmt: skip
        await running.enroll_lab()
        yield running


async def test_roles_decide_and_every_decision_is_audited(platform: Platform) -> None:
    viewer = platform.mint("platform-viewer", subject="vera")
    admin = platform.mint("platform-admin", subject="pat")
    calls = [  # (token, method, path, request id, expected status)
        (viewer, "GET", "/v1/nodes", "authz-1", 200),
        (viewer, "GET", "/v1/nodes/lab-001", "authz-2", 200),
        (viewer, "POST", "/v1/nodes/lab-001/release", "authz-3", 403),
        (platform.token, "GET", "/v1/audit", "authz-4", 403),  # an operator
        (platform.mint("tenant-member", subject="tim"), "GET", "/v1/nodes", "authz-5", 403),
    ]
    for bearer, method, path, request_id, expected in calls:
        async with platform.api(bearer) as api:
            reply = await api.request(method, path, headers={"X-Request-ID": request_id})
        assert reply.status_code == expected, (path, reply.text)
        # Ours is always recorded; the caller's is kept beside it and echoed.
        assert reply.headers["X-Client-Request-ID"] == request_id
        assert reply.headers["X-Request-ID"] != request_id
        if expected == 403:
            assert reply.headers["content-type"] == "application/problem+json"
            assert reply.json()["type"] == "urn:metalplane:problem:forbidden"
    entries, cursor = [], None
    async with platform.api(admin) as api:
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/audit", params=params)).json()
            entries += page["items"]
            if not (cursor := page["next"]):
                break
    ours = {
        e["client_request_id"]: e
        for e in entries
        if (e["client_request_id"] or "").startswith("authz-")
    }
    assert all(len(e["request_id"]) == 32 for e in ours.values())
    assert sorted(ours) == [c[3] for c in calls]  # one entry per decision, no more
    assert [ours[c[3]]["allowed"] for c in calls] == [c[4] == 200 for c in calls]
    release = ours["authz-3"]
    assert (release["subject"], release["action"], release["resource_kind"]) == (
        "vera", "operate", "node",
    )  # fmt: skip
    assert release["resource_id"] == "lab-001" and "needs one of" in release["reason"]
    # The admin's own reads of the log are decisions too, and are recorded.
    async with platform.api(admin) as api:
        later = (await api.get("/v1/audit", params={"limit": 1000})).json()["items"]
    assert any(e["subject"] == "pat" and e["resource_kind"] == "audit" for e in later)


async def test_rate_limit_answers_429_with_retry_after(platform: Platform) -> None:
    app = platform.api_app
    saved = app.state.rate_limiter
    app.state.rate_limiter = TokenBuckets(rate_per_second=0.5, burst=2)
    try:
        async with platform.api(platform.mint("platform-viewer", subject="rita")) as api:
            codes = [(await api.get("/v1/images")).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            limited = await api.get("/v1/images")
            assert limited.status_code == 429
            assert limited.headers["Retry-After"] == "2"
            assert limited.json()["type"].endswith("rate-limited")
        async with platform.api(platform.mint("platform-viewer", subject="other")) as api:
            assert (await api.get("/v1/images")).status_code == 200  # per principal
    finally:
        app.state.rate_limiter = saved


async def test_log_records_carry_the_request_id(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metalplane")
    async with platform.api() as api:
        reply = await api.get("/v1/nodes/lab-001", headers={"X-Request-ID": "trace-me-1"})
        assert reply.status_code == 200
        bad = await api.post("/v1/nodes/lab-001/provision", json={"image": "nope"})
    access = [r for r in caplog.records if r.name == "metalplane.access"]
    assert reply.headers["X-Client-Request-ID"] == "trace-me-1"
    mine = [r for r in access if getattr(r, "request_id", None) == reply.headers["X-Request-ID"]]
    assert len(mine) == 1 and mine[0].getMessage().startswith("GET /v1/nodes/lab-001 200 ")
    assigned = bad.headers["X-Request-ID"]  # none sent: one was assigned, and logged
    assert any(r.request_id == assigned and " 422 " in r.getMessage() for r in access)


async def test_a_burst_beyond_the_pool_is_answered_and_audited(platform: Platform) -> None:
    """Each request reads the node and writes its audited decision; holding the first
    connection while waiting for a second deadlocked the pool until its 30 s timeout."""
    async with platform.api(platform.mint("platform-viewer", subject="burst")) as api:
        replies = await asyncio.wait_for(
            asyncio.gather(*(api.get("/v1/nodes/lab-001") for _ in range(20))), timeout=20
        )
        assert [r.status_code for r in replies] == [200] * 20, replies[0].text
    entries, cursor = [], None
    async with platform.api(platform.mint("platform-admin")) as api:
        while True:
            params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            page = (await api.get("/v1/audit", params=params)).json()
            entries += page["items"]
            if not (cursor := page["next"]):
                break
    assert sum(e["subject"] == "burst" for e in entries) == 20
