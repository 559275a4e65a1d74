"""Tenants through the API: platform admins manage them; a tenant's principals read only
their own (another tenant is 404); usage counts what the tenant holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import update

from inventory.models import Node
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18270, lab_control=18370, redfish=18371, ipmi_base=19670)


@pytest_asyncio.fixture(scope="module")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_tenants", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("tenants"), ports=PORTS, nodes=1,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        yield running


async def test_tenant_lifecycle_isolation_and_usage(platform: Platform) -> None:
    admin = platform.mint("platform-admin")
    acme_admin = platform.mint("tenant-admin", tenant="acme")
    acme_member = platform.mint("tenant-member", tenant="acme")
    async with platform.api(admin) as api:
        for tenant_id in ("acme", "globex"):
            created = await api.post(
                "/v1/tenants",
                json={"id": tenant_id, "display_name": tenant_id.title(),
                      "quotas": {"gpus": 16, "nodes": 2, "storage_gib": 10240}},
            )  # fmt: skip
            assert created.status_code == 201, created.text
        assert (
            await api.post("/v1/tenants", json={"id": "acme", "display_name": "x"})
        ).status_code == 409
        bad = await api.post("/v1/tenants", json={"id": "Not_A_Label", "display_name": "x"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        listed = (await api.get("/v1/tenants", params={"limit": 1})).json()
        assert [t["id"] for t in listed["items"]] == ["acme"] and listed["next"] == "acme"
        page2 = (await api.get("/v1/tenants", params={"limit": 1, "cursor": "acme"})).json()
        assert [t["id"] for t in page2["items"]] == ["globex"]

    async with platform.api(acme_admin) as api:
        acme = (await api.get("/v1/tenants/acme")).json()
        assert acme["quotas"] == {"gpus": 16, "nodes": 2, "storage_gib": 10240}
        assert acme["usage"] == {"gpus": 0, "nodes": 0}
        hidden = await api.get("/v1/tenants/globex")
        assert hidden.status_code == 404  # exists, but not for acme
        assert (await api.get("/v1/tenants/nope")).status_code == 404  # same answer
        assert [t["id"] for t in (await api.get("/v1/tenants")).json()["items"]] == ["acme"]
        assert (await api.patch("/v1/tenants/acme", json={"state": "suspended"})).status_code == 403
    async with platform.api(acme_member) as api:
        assert (await api.get("/v1/tenants/acme")).status_code == 200
        assert (await api.delete("/v1/tenants/acme")).status_code == 403
    async with platform.api() as api:  # operators do not read tenants: 403 whatever the id
        assert (await api.get("/v1/tenants/acme")).status_code == 403
        assert (await api.get("/v1/tenants/nope")).status_code == 403

    # Usage counts what the tenant holds; a tenant holding nodes cannot be deleted.
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id="acme"))
    async with platform.api(admin) as api:
        acme = (await api.get("/v1/tenants/acme")).json()
        assert acme["usage"]["nodes"] == 1 and acme["usage"]["gpus"] > 0
        in_use = await api.delete("/v1/tenants/acme")
        assert in_use.status_code == 409 and in_use.json()["type"].endswith("tenant-in-use")
        suspended = await api.patch(
            "/v1/tenants/globex", json={"state": "suspended", "quotas": {"gpus": 8}}
        )
        assert suspended.json()["state"] == "suspended"
        assert suspended.json()["quotas"] == {"gpus": 8, "nodes": 0, "storage_gib": 0}
        only_suspended = (await api.get("/v1/tenants", params={"state": "suspended"})).json()
        assert [t["id"] for t in only_suspended["items"]] == ["globex"]
        assert (await api.patch("/v1/tenants/globex", json={"state": "gone"})).status_code == 422
        assert (await api.delete("/v1/tenants/globex")).status_code == 204
        assert (await api.get("/v1/tenants/globex")).status_code == 404
        assert (await api.delete("/v1/tenants/globex")).status_code == 404
        # Its id is never given again: a newcomer inherits none of its history.
        again = await api.post("/v1/tenants", json={"id": "globex", "display_name": "G2"})
        assert again.status_code == 409 and "never reused" in again.json()["detail"]
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id=None))


async def test_idempotency_key_makes_one_resource_and_replays(platform: Platform) -> None:
    admin = platform.mint("platform-admin", subject="ida")
    body = {"id": "initech", "display_name": "Initech", "quotas": {"gpus": 4}}
    async with platform.api(admin) as api:
        replies = await asyncio.gather(
            *(
                api.post("/v1/tenants", json=body, headers={"Idempotency-Key": "create-initech"})
                for _ in range(5)
            )
        )
        assert [r.status_code for r in replies] == [201] * 5, [r.text for r in replies]
        assert len({r.content for r in replies}) == 1  # the same answer, byte for byte
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 4
        listed = (await api.get("/v1/tenants", params={"limit": 1000})).json()["items"]
        assert [t["id"] for t in listed].count("initech") == 1
        other_body = await api.post(
            "/v1/tenants", json={**body, "display_name": "Initrode"},
            headers={"Idempotency-Key": "create-initech"},
        )  # fmt: skip
        assert other_body.status_code == 422
        assert other_body.json()["type"].endswith("idempotency-key-reused")
        bad_key = await api.post("/v1/tenants", json=body, headers={"Idempotency-Key": "a b"})
        assert bad_key.status_code == 400
        without_key = await api.post("/v1/tenants", json=body)
        assert without_key.status_code == 409  # a plain retry is a conflict, as before
    # Keys are per subject: another admin's same key is another request.
    async with platform.api(platform.mint("platform-admin", subject="other")) as api:
        fresh = await api.post(
            "/v1/tenants", json={"id": "hooli", "display_name": "Hooli"},
            headers={"Idempotency-Key": "create-initech"},
        )  # fmt: skip
        assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers


async def test_nodes_filter_by_labels(platform: Platform) -> None:
    async with platform.sessions.begin() as session:
        await session.execute(
            update(Node).where(Node.id == "lab-001").values(labels={"rack": "r12", "gpu": "h100"})
        )
    async with platform.api() as api:

        async def ids(*labels: str) -> list[str]:
            reply = await api.get("/v1/nodes", params={"label": list(labels)})
            assert reply.status_code == 200, reply.text
            return [n["id"] for n in reply.json()["items"]]

        assert await ids("rack=r12") == ["lab-001"]
        assert await ids("rack=r12", "gpu=h100") == ["lab-001"]
        assert await ids("rack=r12", "gpu=a100") == []
        assert await ids("rack=r7") == []
        for label in ("no-equals-sign", "=v", "k" * 64 + "=v", "k=v\x01"):
            bad = await api.get("/v1/nodes", params={"label": label})
            assert bad.status_code in (400, 422), label
            assert bad.headers["content-type"] == "application/problem+json"


async def test_control_characters_are_a_422_not_a_500(platform: Platform) -> None:
    # Found by schemathesis: PostgreSQL cannot store NUL, so it must not get that far.
    async with platform.api(platform.mint("platform-admin")) as api:
        for name in ("nul\u0000inside", "bell\u0007"):
            reply = await api.post("/v1/tenants", json={"id": "ctl", "display_name": name})
            assert reply.status_code == 422, reply.text
        node = (await platform.lab_nodes())[0]
        reply = await api.post("/v1/nodes", json={**node, "id": "ctl-1", "vendor": "x\u0000"})
        assert reply.status_code == 422, reply.text
