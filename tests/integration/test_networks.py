"""Tenant networks through the API and the network workflows: values allocated at once and
never shared, overlapping CIDRs refused within a tenant, another tenant's network hidden,
attach and detach of the tenant's nodes, and delete returning every value to the pools.

This module runs with no switches enrolled and no InfiniBand backend: it covers the inventory,
API and workflow side; tests/integration/test_fabric_network.py drives real switches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from inventory.models import Allocation, Node
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18240, lab_control=18340, redfish=18341, ipmi_base=19640)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_networks", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("networks"), ports=PORTS, nodes=1,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin")) as api:
            for tenant_id in ("acme", "globex"):
                reply = await api.post("/v1/tenants", json={"id": tenant_id, "display_name": "T"})
                assert reply.status_code == 201, reply.text
        yield running


async def wait_network(api: Any, network_id: str, states: set[str]) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            reply = await api.get(f"/v1/networks/{network_id}")
            if reply.status_code == 404 and "gone" in states:
                return {"state": "gone"}
            body = reply.json()
            if body.get("state") in states:
                return body
            await asyncio.sleep(0.2)


async def until(api: Any, path: str, done: Callable[[list[Any]], bool]) -> None:
    """Poll a list until `done` holds for its items (a test watching a workflow's effect)."""
    async with asyncio.timeout(60):
        items = (await api.get(path)).json()["items"]
        while not done(items):
            await asyncio.sleep(0.2)
            items = (await api.get(path)).json()["items"]


async def held(platform: Platform, network_id: str | None = None) -> int:
    query = select(func.count()).select_from(Allocation)
    if network_id is not None:
        query = query.where(Allocation.network_id == uuid.UUID(network_id))
    async with platform.sessions() as session:
        return int(await session.scalar(query) or 0)


async def test_networks_allocate_isolate_and_return_their_values(platform: Platform) -> None:
    ann = platform.mint("tenant-member", tenant="acme", subject="ann")
    bob = platform.mint("tenant-member", tenant="acme", subject="bob")
    acme_admin = platform.mint("tenant-admin", tenant="acme", subject="ada")
    globex_admin = platform.mint("tenant-admin", tenant="globex", subject="gus")

    async with platform.api(ann) as api:
        created = await api.post("/v1/networks", json={"name": "lan", "tenant_id": "globex"})
        assert created.status_code == 201, created.text
        lan = created.json()
        assert (lan["tenant_id"], lan["owner"], lan["state"]) == ("acme", "ann", "creating")
        lan = await wait_network(api, lan["id"], {"ready", "failed"})
        assert lan["state"] == "ready", lan["last_error"]
        overlapping = await api.post("/v1/networks", json={"name": "lan2", "cidr": lan["cidr"]})
        assert overlapping.status_code == 422
        assert overlapping.json()["type"].endswith("cidr-overlap")
        duplicate = await api.post("/v1/networks", json={"name": "lan"})
        assert duplicate.status_code == 409
        bad = await api.post("/v1/networks", json={"name": "x", "cidr": "10.0.0.1/24"})
        assert bad.status_code == 422  # host bits set: not a network
    async with platform.api(globex_admin) as api:
        same = await api.post("/v1/networks", json={"name": "lan", "cidr": lan["cidr"]})
        assert same.status_code == 201  # another tenant may reuse the CIDR
        for call in (api.get(f"/v1/networks/{lan['id']}"), api.delete(f"/v1/networks/{lan['id']}")):
            assert (await call).status_code == 404
        assert [n["tenant_id"] for n in (await api.get("/v1/networks")).json()["items"]] == [
            "globex"
        ]
    async with platform.api(bob) as api:  # another member's network: as if it did not exist
        assert (await api.delete(f"/v1/networks/{lan['id']}")).status_code == 404
    async with platform.api(platform.mint("platform-admin")) as api:
        in_use = await api.delete("/v1/tenants/acme")  # its network would be left on the switches
        assert in_use.status_code == 409 and "networks" in in_use.json()["detail"]

    # 50 creates at once: no VLAN, VNI, VRF table, subnet or PKey is shared.
    async with platform.api(acme_admin) as api:
        replies = await asyncio.gather(
            *(api.post("/v1/networks", json={"name": f"n{i}"}) for i in range(50))
        )
        assert [r.status_code for r in replies] == [201] * 50
        made = [r.json() for r in replies] + [lan]
        for field in ("vlan", "l2vni", "l3vni", "vrf_table", "pkey", "cidr"):
            assert len({n[field] for n in made}) == 51, field
        for network in made:
            assert (await wait_network(api, network["id"], {"ready", "failed"}))["state"] == "ready"

    # Attach one of acme's nodes (only once it is active); a network with nodes cannot go,
    # nor can the node's cabling change; detach, then delete.
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id="acme"))
    async with platform.api(ann) as api:
        attachments = f"/v1/networks/{lan['id']}/attachments"
        not_active = await api.post(attachments, json={"node_id": "lab-001"})
        assert not_active.status_code == 409
        assert not_active.json()["type"].endswith("node-not-active")
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-001").values(state="active"))
    async with platform.api(ann) as api:
        attached = await api.post(attachments, json={"node_id": "lab-001"})
        assert attached.status_code == 202, attached.text
        await until(api, attachments, lambda items: [a["state"] for a in items] == ["attached"])
        in_use = await api.delete(f"/v1/networks/{lan['id']}")
        assert in_use.status_code == 409 and in_use.json()["type"].endswith("network-in-use")
    async with platform.api(platform.mint("operator")) as ops:
        recabled = await ops.put(
            "/v1/nodes/lab-001/cabling", json={"ib_guids": ["0x0002c90300000001"]}
        )
        assert recabled.status_code == 409 and recabled.json()["type"].endswith("node-attached")
        same_cabling = await ops.put("/v1/nodes/lab-001/cabling", json={})
        assert same_cabling.status_code == 200  # unchanged: fine (metalplane up re-cables)
    async with platform.api(ann) as api:
        detached = await api.delete(f"/v1/networks/{lan['id']}/attachments/lab-001")
        assert detached.status_code == 202
        await until(api, attachments, lambda items: items == [])
        assert await held(platform, lan["id"]) == 7
        assert (await api.delete(f"/v1/networks/{lan['id']}")).status_code == 202
        assert (await wait_network(api, lan["id"], {"gone"}))["state"] == "gone"
    assert await held(platform, lan["id"]) == 0
    async with platform.api(globex_admin) as api:  # globex's node is not acme's to attach
        theirs = await api.post(
            f"/v1/networks/{same.json()['id']}/attachments", json={"node_id": "lab-001"}
        )
        assert theirs.status_code == 404

    # Deleting the rest returns every value.
    async with platform.api(acme_admin) as api:
        for network in made[:-1]:
            assert (await api.delete(f"/v1/networks/{network['id']}")).status_code == 202
        for network in made[:-1]:
            await wait_network(api, network["id"], {"gone"})
    assert await held(platform) == 6  # globex's network only (its CIDR was given: no block)


async def test_an_exhausted_pool_is_a_clear_409(platform: Platform) -> None:
    app = platform.api_app
    saved = app.state.settings
    app.state.settings = saved.model_copy(update={"pool_pkey": (0x7FFE, 0x7FFE)})
    try:
        async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
            first = await api.post("/v1/networks", json={"name": "last-pkey"})
            assert first.status_code == 201
            refused = await api.post("/v1/networks", json={"name": "no-pkey-left"})
            assert refused.status_code == 409
            assert refused.json()["type"].endswith("pool-exhausted")
            assert refused.json()["pool"] == "pkey"
            assert (await api.get("/v1/networks", params={"state": "ready"})).status_code == 200
    finally:
        app.state.settings = saved


async def test_a_cidr_outside_the_tenant_ranges_is_a_422_naming_them(platform: Platform) -> None:
    ranges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]
    before = await held(platform)
    async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
        for cidr in ("0.0.0.0/0", "224.0.0.0/4", "127.0.0.0/8", "169.254.0.0/16",
                     "255.255.255.255/32", "8.8.8.0/24"):  # fmt: skip
            refused = await api.post("/v1/networks", json={"name": "outside", "cidr": cidr})
            assert refused.status_code == 422, (cidr, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            problem = refused.json()
            assert problem["type"] == "urn:metalplane:problem:cidr-not-allowed", problem
            assert problem["allowed_ranges"] == ranges
            assert ", ".join(ranges) in problem["detail"]
        too_wide = await api.post("/v1/networks", json={"name": "wide", "cidr": "10.0.0.0/12"})
        assert too_wide.status_code == 422 and "/16 to /29" in too_wide.json()["detail"]
        assert too_wide.json()["prefix_lengths"] == {"min": 16, "max": 29}
        names = {n["name"] for n in (await api.get("/v1/networks")).json()["items"]}
        assert not names & {"outside", "wide"}
    assert await held(platform) == before

    app = platform.api_app
    saved = app.state.settings
    app.state.settings = saved.model_copy(update={"tenant_cidr_ranges": ("10.99.0.0/16",)})
    try:
        async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
            elsewhere = await api.post("/v1/networks", json={"name": "x", "cidr": "10.50.0.0/24"})
            assert elsewhere.status_code == 422
            assert elsewhere.json()["allowed_ranges"] == ["10.99.0.0/16"]
            inside = await api.post("/v1/networks", json={"name": "x", "cidr": "10.99.1.0/24"})
            assert inside.status_code == 201, inside.text
            await wait_network(api, inside.json()["id"], {"ready", "failed"})
            assert (await api.delete(f"/v1/networks/{inside.json()['id']}")).status_code == 202
            await wait_network(api, inside.json()["id"], {"gone"})
    finally:
        app.state.settings = saved
