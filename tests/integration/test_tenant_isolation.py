"""Tenant isolation through the API, resource type by resource type: another tenant's resource
answers 404 to read, update and delete and stays unchanged; members keep to what they own; a
body cannot choose its tenant; a suspended tenant reads but does not create; and every
decision of this test is one audit entry."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from inventory.models import AuditEntry
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18290, lab_control=18390, redfish=18391, ipmi_base=19690)


@pytest_asyncio.fixture(scope="module")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_isolation", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("isolation"), ports=PORTS, nodes=1,
    ) as running:  # fmt: skip
        async with running.api(running.mint("platform-admin", subject="root")) as api:
            for tenant_id in ("acme", "globex"):
                reply = await api.post("/v1/tenants", json={"id": tenant_id, "display_name": "T"})
                assert reply.status_code == 201, reply.text
        yield running


class Calls:
    """API clients that tag every request with a fresh request id, to match the audit log."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.decided: list[str] = []  # request ids that reached a policy decision
        self.replayed: list[str] = []  # request ids answered from the idempotency store

    def client(self, token: str) -> httpx.AsyncClient:
        async def tag(request: httpx.Request) -> None:
            request.headers["X-Request-ID"] = f"iso-{uuid.uuid4().hex}"

        async def note(response: httpx.Response) -> None:
            request_id = response.headers["X-Client-Request-ID"]
            if response.headers.get("Idempotent-Replayed") == "true":
                self.replayed.append(request_id)
            elif response.status_code not in (401, 422):  # refused before any decision
                self.decided.append(request_id)

        return httpx.AsyncClient(
            base_url=self.platform.api_url, timeout=30,
            headers={"Authorization": f"Bearer {token}"},
            event_hooks={"request": [tag], "response": [note]},
        )  # fmt: skip


def ed25519_key(comment: str) -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {comment}"


def fingerprint_by_ssh_keygen(public_key: str, tmp: Path) -> str:
    path = tmp / "key.pub"
    path.write_text(public_key + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()[1]


async def test_ssh_keys_stay_within_their_tenant(platform: Platform, tmp_path: Path) -> None:
    calls = Calls(platform)
    ann = platform.mint("tenant-member", tenant="acme", subject="ann")
    bob = platform.mint("tenant-member", tenant="acme", subject="bob")
    acme_admin = platform.mint("tenant-admin", tenant="acme", subject="ada")
    acme_viewer = platform.mint("viewer", tenant="acme", subject="val")
    globex_admin = platform.mint("tenant-admin", tenant="globex", subject="gus")
    globex_member = platform.mint("tenant-member", tenant="globex", subject="gil")
    root = platform.mint("platform-admin", subject="root")

    # Mass assignment: the body cannot choose the tenant or the owner.
    anns_key = ed25519_key("ann@laptop")
    async with calls.client(ann) as api:
        body: dict[str, Any] = {
            "name": "laptop", "public_key": anns_key, "tenant_id": "globex", "owner": "gil",
        }  # fmt: skip
        replies = await asyncio.gather(
            *(api.post("/v1/ssh-keys", json=body, headers={"Idempotency-Key": "k1"})
              for _ in range(5))
        )  # fmt: skip
        assert [r.status_code for r in replies] == [201] * 5, [r.text for r in replies]
        created = replies[0].json()
        assert len({r.json()["id"] for r in replies}) == 1  # one key, however often retried
        assert (created["tenant_id"], created["owner"]) == ("acme", "ann")
        assert created["fingerprint"] == fingerprint_by_ssh_keygen(anns_key, tmp_path)
        key_url = f"/v1/ssh-keys/{created['id']}"
        assert (await api.post("/v1/ssh-keys", json=body)).status_code == 409  # same key again
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        weak_line = weak.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        refused = await api.post("/v1/ssh-keys", json={"name": "old", "public_key": weak_line})
        assert refused.status_code == 422 and "2048" in refused.text
        garbage = await api.post("/v1/ssh-keys", json={"name": "x", "public_key": "ssh-rsa AAAA"})
        assert garbage.status_code == 422
    async with calls.client(bob) as api:
        bobs = await api.post("/v1/ssh-keys", json={"name": "bob", "public_key": ed25519_key("b")})
        assert bobs.status_code == 201

    # Another tenant: read, update and delete all answer 404, exactly like a missing key.
    missing = f"/v1/ssh-keys/{uuid.uuid4()}"
    for token in (globex_admin, globex_member):
        async with calls.client(token) as api:
            for path in (key_url, missing):
                assert (await api.get(path)).status_code == 404
                assert (await api.patch(path, json={"name": "mine"})).status_code == 404
                assert (await api.delete(path)).status_code == 404
            assert (await api.get("/v1/ssh-keys")).json()["items"] == []
    # The same tenant: members keep to their own, admins and viewers see the tenant's.
    async with calls.client(bob) as api:  # another member's key: as if it did not exist
        assert (await api.get(key_url)).status_code == 404
        assert (await api.delete(key_url)).status_code == 404
        assert [k["owner"] for k in (await api.get("/v1/ssh-keys")).json()["items"]] == ["bob"]
        for admin_call in (api.post("/v1/tenants", json={"id": "x", "display_name": "x"}),
                           api.get("/v1/audit"), api.delete("/v1/tenants/acme")):  # fmt: skip
            assert (await admin_call).status_code == 403
    async with calls.client(acme_viewer) as api:
        assert len((await api.get("/v1/ssh-keys")).json()["items"]) == 2
        assert (await api.delete(key_url)).status_code == 403
    async with calls.client(acme_admin) as api:
        renamed = await api.patch(key_url, json={"name": "ann-laptop", "tenant_id": "globex"})
        assert renamed.status_code == 200
        assert (renamed.json()["name"], renamed.json()["tenant_id"]) == ("ann-laptop", "acme")
    async with calls.client(root) as api:
        everything = (await api.get("/v1/ssh-keys")).json()["items"]
        assert {k["tenant_id"] for k in everything} == {"acme"} and len(everything) == 2

    # Suspended: acme reads, but creates and changes nothing until resumed.
    async with calls.client(root) as api:
        await api.patch("/v1/tenants/acme", json={"state": "suspended"})
    async with calls.client(ann) as api:
        assert (await api.get(key_url)).status_code == 200
        blocked = await api.post("/v1/ssh-keys", json={"name": "n", "public_key": ed25519_key("")})
        assert blocked.status_code == 403
        assert blocked.json()["type"] == "urn:metalplane:problem:tenant-suspended"
        assert (await api.delete(key_url)).status_code == 403
    async with calls.client(root) as api:
        await api.patch("/v1/tenants/acme", json={"state": "active"})
    async with calls.client(ann) as api:
        assert (await api.delete(key_url)).status_code == 204
        assert (await api.get(key_url)).status_code == 404

    # Tenants themselves: another tenant's answers 404 to read, update and delete.
    async with calls.client(globex_admin) as api:
        for path in ("/v1/tenants/acme", "/v1/tenants/no-such-tenant"):
            assert (await api.get(path)).status_code == 404
            assert (await api.patch(path, json={"display_name": "pwned"})).status_code == 404
            assert (await api.delete(path)).status_code == 404
    async with calls.client(root) as api:
        acme = (await api.get("/v1/tenants/acme")).json()
        assert (acme["display_name"], acme["state"]) == ("T", "active")

    # One audit entry per decision of this test, none for replayed or refused-early requests.
    async with platform.sessions() as session:
        rows = (
            await session.scalars(
                select(AuditEntry.client_request_id).where(
                    AuditEntry.client_request_id.like("iso-%")
                )
            )
        ).all()
    assert sorted(rows) == sorted(calls.decided)
    assert len(calls.replayed) == 4 and not set(calls.replayed) & set(rows)
