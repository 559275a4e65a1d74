"""The API's boundary against hostile input: every route with NUL, control characters, 10 kB
values, invalid UTF-8 and odd Unicode in each path and query parameter; tokens with such claims;
oversized and unauthenticated bodies; idempotency keys across tenants and their replays under
the rate limit; request ids. Never a 5xx, always problem+json, and an authenticated caller's
refusal is in the audit log. (tests/integration/test_api_schema.py adds schemathesis' cases.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from api.ratelimit import TokenBuckets
from identity import dev_issuer
from inventory.models import AuditEntry
from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")
PORTS = Ports(api=18298, lab_control=18398, redfish=18399, ipmi_base=19750)
# Raw (already percent-encoded) values for a path segment or a query value.
HOSTILE = [
    "%00", "a%00b", "%01", "%1b%5B31m", "%7f", "%c2%85", "a" * 10_000, "%ED%A0%80", "%FF%FE",
    "%C0%AF", "%E2%80%AE", "%EF%BB%BF", "%F0%9F%92%A3", "..%2F..%2Fetc", "%25", " ", "+",
    "-1", "99999999999999999999999", "1e400", "%0d%0aSet-Cookie:x",
]  # fmt: skip
PARAM = re.compile(r"\{([^}]+)\}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_boundary", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("boundary"), ports=PORTS, nodes=1,
        in_process_workers=(),
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin", subject="root")) as api:
            for tenant in ("acme", "globex"):
                reply = await api.post("/v1/tenants", json={"id": tenant, "display_name": "T"})
                assert reply.status_code == 201, reply.text
        yield running


async def routes(platform: Platform) -> list[tuple[str, str, list[str]]]:
    """(method, path template, query parameter names) of every operation the API documents."""
    async with httpx.AsyncClient(base_url=platform.api_url) as http:
        document = (await http.get("/openapi.json")).json()
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/v1/events":  # an endless stream: tested below
                continue
            queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), path, queries))
    assert len(found) > 30
    return found


def assert_clean(reply: httpx.Response, what: str) -> None:
    assert reply.status_code < 500, f"{what}: {reply.status_code} {reply.text[:300]}"
    if reply.status_code >= 400:
        assert reply.headers["content-type"] == "application/problem+json", what


async def test_hostile_path_and_query_values_never_reach_a_5xx(platform: Platform) -> None:
    tokens = [
        platform.mint("platform-admin", subject="fuzz-admin"),
        platform.mint("tenant-admin", tenant="acme", subject="fuzz-tenant"),
    ]
    tried = 0
    for token in tokens:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "fuzz-key"}
        async with httpx.AsyncClient(base_url=platform.api_url, timeout=30) as http:
            for method, template, queries in await routes(platform):
                body = {} if method in ("POST", "PUT", "PATCH") else None
                for value in HOSTILE:
                    paths = [PARAM.sub(value, template)] if PARAM.search(template) else []
                    filled = PARAM.sub("lab-001", template)
                    paths += [f"{filled}?{q}={value}" for q in queries]
                    for path in paths:
                        url = httpx.URL(platform.api_url + path)  # sent as written
                        reply = await http.request(method, url, json=body, headers=headers)
                        assert_clean(reply, f"{method} {path[:120]}")
                        tried += 1
    assert tried > 1000


async def test_events_refuse_what_they_cannot_use_before_streaming(platform: Platform) -> None:
    async with platform.api(platform.mint("platform-admin")) as api:
        for query in ("after=99999999999999999999999", "after=-1", "kind=bogus", "kind=%00",
                      "kind=" + "n" * 5000):  # fmt: skip
            async with api.stream("GET", httpx.URL(f"{platform.api_url}/v1/events?{query}")) as r:
                assert r.status_code in (400, 422), query
                assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("claims", "fault"),
    [
        ({"subject": "a\x00b"}, "sub"),
        ({"subject": "\x1b[31m"}, "sub"),
        ({"subject": "s" * 10_000}, "sub"),
        ({"tenant": "acme\x00"}, "tenant"),
        ({"tenant": "ACME"}, "tenant"),
        ({"tenant": "a" * 300}, "tenant"),
        ({"roles": ["platform-admin\x00"]}, "roles"),
        ({"roles": ["viewer"] * 1000}, "roles"),
        ({"roles": ["\u202eadmin"]}, "roles"),
    ],
)
async def test_tokens_with_hostile_claims_are_refused(
    platform: Platform, claims: dict[str, Any], fault: str
) -> None:
    settings = platform.settings
    token = dev_issuer.mint(
        settings.dev_issuer_key_file, issuer=settings.issuer_url, audience=settings.jwt_audience,
        subject=claims.get("subject", "s"), roles=claims.get("roles", ["viewer"]),
        tenant=claims.get("tenant", "acme"),
    )  # fmt: skip
    async with platform.api(token) as api:
        for reply in (
            await api.get("/v1/images"),
            await api.post("/v1/ssh-keys", json={"name": "k"}, headers={"Idempotency-Key": "k"}),
        ):
            assert reply.status_code == 401, reply.text
            assert fault in reply.json()["detail"]


async def test_bodies_are_read_after_authentication_and_only_up_to_the_limit(
    platform: Platform,
) -> None:
    limit = platform.settings.max_request_body_bytes
    huge = b'{"id": "x", "display_name": "' + b"x" * (limit + 1) + b'"}'
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=30) as anonymous:
        for content in (b"{not json", huge):
            reply = await anonymous.post("/v1/tenants", content=content)
            assert reply.status_code == 401, reply.text  # before the body is read or parsed
    async with platform.api(platform.mint("platform-admin", subject="big")) as api:
        sized = await api.post("/v1/tenants", content=huge)
        assert (sized.status_code, sized.json()["type"]) == (
            413,
            "urn:metalplane:problem:body-too-large",
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(limit // 65536 + 2):
                yield b" " * 65536

        chunked = await api.post("/v1/tenants", content=chunks())
        assert chunked.status_code == 413
        assert (await api.get("/v1/tenants/acme")).status_code == 200  # the API is fine
    async with platform.sessions() as session:
        refusals = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.subject == "big", AuditEntry.resource_kind == "request"
                )
            )
        ).all()
    assert len(refusals) == 2 and not any(r.allowed for r in refusals)
    assert all("body" in r.reason and r.request_id for r in refusals)


async def test_idempotency_keys_belong_to_tenant_and_subject(platform: Platform) -> None:
    """One subject holding tokens of two tenants cannot replay one tenant's answer in the
    other: the same key and body under globex makes globex's own key."""
    body = {"name": "laptop", "public_key": _ed25519()}
    headers = {"Idempotency-Key": "same-key"}
    answers = {}
    for tenant in ("acme", "globex"):
        token = platform.mint("tenant-member", tenant=tenant, subject="sam")
        async with platform.api(token) as api:
            reply = await api.post("/v1/ssh-keys", json=body, headers=headers)
            assert reply.status_code == 201, reply.text
            assert "Idempotent-Replayed" not in reply.headers
            again = await api.post("/v1/ssh-keys", json=body, headers=headers)
            assert again.headers.get("Idempotent-Replayed") == "true"
            answers[tenant] = reply.json()
    assert answers["acme"]["tenant_id"] == "acme" and answers["globex"]["tenant_id"] == "globex"
    assert answers["acme"]["id"] != answers["globex"]["id"]


async def test_replays_count_against_the_rate_limit(platform: Platform) -> None:
    app = platform.api_app
    saved = app.state.rate_limiter
    app.state.rate_limiter = TokenBuckets(rate_per_second=0.1, burst=3)
    try:
        token = platform.mint("tenant-member", tenant="acme", subject="replayer")
        body = {"name": "r", "public_key": _ed25519()}
        async with platform.api(token) as api:
            codes = [
                (await api.post("/v1/ssh-keys", json=body, headers={"Idempotency-Key": "r"}))
                .status_code for _ in range(5)
            ]  # fmt: skip
    finally:
        app.state.rate_limiter = saved
    assert codes == [201, 201, 201, 429, 429]


async def test_request_ids_are_ours_and_the_callers_is_checked(platform: Platform) -> None:
    async with platform.api(platform.mint("platform-viewer", subject="rid")) as api:
        plain = await api.get("/v1/images")
        assert re.fullmatch(r"[0-9a-f]{32}", plain.headers["X-Request-ID"])
        given = await api.get("/v1/images", headers={"X-Request-ID": "trace-42"})
        assert given.headers["X-Client-Request-ID"] == "trace-42"
        assert given.headers["X-Request-ID"] not in ("trace-42", plain.headers["X-Request-ID"])
        for bad in (b"has space", b"x" * 129, "caf\u00e9".encode()):
            refused = await api.get("/v1/images", headers={"X-Request-ID": bad})
            assert refused.status_code == 400 and "X-Request-ID" in refused.json()["title"]
    async with platform.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.client_request_id == "trace-42")
        )
    assert entry is not None and entry.request_id == given.headers["X-Request-ID"]


def _ed25519() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
