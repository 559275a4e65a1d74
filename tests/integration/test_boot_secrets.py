"""The boot service keeps its secrets (docs/boot-threat-model.md), against a whole platform:
reading the iPXE script changes nothing, a boot's user-data (its token) and its cluster secrets
are handed out once and a second request leaves an event on the node, the head node's report
token expires and rotates, and the Kubernetes CA key goes to the controller node once.

Where a test plays a node (or someone on the provisioning network who knows its MAC), it opens
the node a boot session as ProvisionNode's claim does, and talks to the boot service over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select

from inventory import boot_sessions
from inventory.models import BootSession, Cluster, Event
from tests.integration.test_fabric_network import eventually
from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = Ports(api=18700, lab_control=18800, redfish=18801, ipmi_base=19800)
H100 = "H100 80GB HBM3"
REPORT_TTL = 6.0  # seconds: the head node's agent reports every 2 s, with the token it got last
BOOT_DELAY = 3.0  # seconds from power-on to the node's first request: a thief's head start


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_boot_secrets", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("boot_secrets"), ports=PORTS, nodes=4,
        boot_delay=BOOT_DELAY, protocols="redfish", lab_gpu_model=H100,
        extra_settings={"cluster_report_token_ttl_seconds": REPORT_TTL},
    ) as running:  # fmt: skip
        await running.enroll_lab()
        yield running


def boot_service(platform: Platform) -> httpx.AsyncClient:
    """What a node (or anyone on the provisioning network) reaches: no credentials."""
    return httpx.AsyncClient(base_url=platform.api_url, timeout=30)


async def mac_of(platform: Platform, node_id: str) -> str:
    return str((await platform.lab_node(node_id))["macs"][0])


async def session_of(platform: Platform, session_id: uuid.UUID) -> BootSession:
    async with platform.sessions() as session:
        boot = await boot_sessions.get_session(session, session_id)
    assert boot is not None
    return boot


async def open_boot_session(platform: Platform, node_id: str) -> uuid.UUID:
    """A boot session for the node, as ProvisionNode's claim opens one."""
    session_id = uuid.uuid4()
    async with platform.sessions.begin() as session:
        await boot_sessions.open_session(
            session, session_id=session_id, node_id=node_id, workflow_id=f"node/{node_id}",
            image="lab-sim", kernel_args=["iommu=pt"], kernel_sha256=None, initrd_sha256=None,
            ttl=timedelta(minutes=10),
        )  # fmt: skip
    return session_id


async def close_boot_sessions(platform: Platform, node_id: str) -> None:
    async with platform.sessions.begin() as session:
        await boot_sessions.close_sessions(session, node_id)


async def node_events(platform: Platform, node_id: str, like: str) -> list[Event]:
    async with platform.sessions() as session:
        found = await session.scalars(
            select(Event)
            .where(Event.kind == "node", Event.resource_id == node_id, Event.reason.like(like))
            .order_by(Event.id)
        )
        return list(found.all())


async def boot(http: httpx.AsyncClient, mac: str) -> dict[str, Any]:
    """What the node's OS does first: post its boot start, then fetch its user-data (once)."""
    started = await http.post(f"/boot/{mac}/boot-start")
    assert started.status_code == 200, started.text
    user_data = await http.get(f"/boot/{mac}/user-data")
    assert user_data.status_code == 200, user_data.text
    section = yaml.safe_load(user_data.text)["metalplane"]
    assert isinstance(section, dict)
    return {"boot": started.json()["boot"], **section}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_reading_the_script_changes_nothing_and_a_stale_token_is_reported(
    platform: Platform,
) -> None:
    mac = await mac_of(platform, "lab-003")
    session_id = await open_boot_session(platform, "lab-003")
    try:
        async with boot_service(platform) as http:
            for _ in range(3):
                script = await http.get(f"/boot/{mac}/ipxe")
                assert script.status_code == 200 and script.text.startswith("#!ipxe")
            assert (await session_of(platform, session_id)).boots == 0  # a GET starts nothing
            first = await boot(http, mac)
            assert first["boot"] == 1
            assert (await session_of(platform, session_id)).user_data_boot == 1
            # Someone else who knows the MAC starts a boot: the node's token goes stale.
            second = await http.post(f"/boot/{mac}/boot-start")
            assert second.json()["boot"] == 2
            refused = await http.post(
                "/boot/phone-home", json={"kernel_cmdline": "x"},
                headers=bearer(first["phone_home"]["token"]),
            )  # fmt: skip
            assert refused.status_code == 401, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
        (event,) = await node_events(platform, "lab-003", "phone-home with the token of boot 1%")
        assert "boot 2 started since" in str(event.reason)
        assert (event.from_state, event.to_state) == ("available", "available")
    finally:
        await close_boot_sessions(platform, "lab-003")


async def test_a_boots_user_data_is_handed_out_once_and_a_second_fetch_is_reported(
    platform: Platform,
) -> None:
    """Someone on the provisioning network takes boot 0's user-data before the node's OS
    posts its boot start: it is handed out once (a node that booted before an upgrade gets it
    that way), the second fetch is refused and recorded; the node's own boot is unharmed."""
    mac = await mac_of(platform, "lab-004")
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-004/provision", json={"image": "lab-sim"})
        assert reply.status_code == 202, reply.text
    async with boot_service(platform) as http:

        async def session_open() -> bool:  # it opens before the power-on
            return (await http.get(f"/boot/{mac}/ipxe")).status_code == 200

        await eventually(session_open, 30)
        taken = await http.get(f"/boot/{mac}/user-data")
        assert taken.status_code == 200, taken.text
        token = yaml.safe_load(taken.text)["metalplane"]["phone_home"]["token"]
        assert boot_sessions.boot_from_token(token, platform.api_app.state.boot_secret).boot == 0
        again = await http.get(f"/boot/{mac}/user-data")
        assert again.status_code == 409, again.text
        problem = again.json()
        assert (
            problem["type"].endswith("user-data-already-fetched") and "boot 0" in problem["detail"]
        )
    (event,) = await node_events(platform, "lab-004", "%user-data was fetched twice%")
    assert event.reason is not None and event.reason.startswith("boot 0's user-data")
    assert (event.from_state, event.to_state) == ("provisioning", "provisioning")
    assert event.tenant_id is None and event.workflow_id == "node/lab-004"
    node = await platform.wait_state("lab-004", {"active", "failed"})
    assert node["state"] == "active", node["last_error"]
    async with platform.sessions() as session:
        done = await session.scalar(
            select(BootSession).where(BootSession.node_id == "lab-004").order_by(
                BootSession.created_at.desc()
            )
        )  # fmt: skip
    # The node's OS posted boot 1's start, fetched its user-data once and phoned home with it.
    assert done is not None and (done.boots, done.user_data_boot, done.phoned_home_boot) == (
        1,
        1,
        1,
    )
    assert len(await node_events(platform, "lab-004", "%twice%")) == 1


async def test_cluster_secrets_once_per_boot_ca_key_once_and_report_tokens_rotate(
    platform: Platform,
) -> None:
    admin = platform.api(platform.mint("platform-admin"))
    async with admin:
        created = await admin.post(
            "/v1/tenants",
            json={"id": "acme", "display_name": "Acme", "quotas": {"nodes": 2, "gpus": 16}},
        )
        assert created.is_success, created.text
    tenant = platform.api(platform.mint("tenant-admin", tenant="acme", subject="acme-admin"))
    async with tenant as api:
        made = await api.post(
            "/v1/clusters",
            json={"name": "k1", "kind": "kubernetes", "node_count": 2, "gpu_model": H100,
                  "image": "lab-sim"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        cluster_id = made.json()["id"]

        async def settled() -> bool:
            return (await api.get(f"/v1/clusters/{cluster_id}")).json()["state"] in (
                "ready", "failed",
            )  # fmt: skip

        await eventually(settled, 180)
        cluster = (await api.get(f"/v1/clusters/{cluster_id}")).json()
    assert cluster["state"] == "ready", cluster["last_error"]
    members = {m["role"]: m["node_id"] for m in cluster["members"]}
    head, worker = members["controller"], members["compute"]
    async with platform.sessions() as session:
        row = await session.get_one(Cluster, uuid.UUID(cluster_id))
    # The head node's kubeadm init took the CA key (checked against the CA) on its boot.
    assert row.ca_key_holder == head
    for node_id in (head, worker):  # each lab node fetched its user-data and secrets once
        assert await node_events(platform, node_id, "%twice%") == []

    # The head node boots again: its secrets come once, without the CA key this time.
    session_id = await open_boot_session(platform, head)
    try:
        async with boot_service(platform) as http:
            part = await boot(http, await mac_of(platform, head))
            token = part["phone_home"]["token"]
            url = part["cluster"]["secrets_url"]
            assert url.endswith("/boot/cluster-secrets")
            assert (await http.get(url, headers=bearer(token))).status_code == 405  # a POST
            secrets = await http.post(url, headers=bearer(token))
            assert secrets.status_code == 200, secrets.text
            body = secrets.json()
            assert "ca_key" not in body and body["ca_cert"] and body["report_token"]
            assert "InitConfiguration" in body["kubeadm_config"]
            again = await http.post(url, headers=bearer(token))
            assert again.status_code == 409, again.text
            assert again.json()["type"].endswith("cluster-secrets-already-fetched")
            assert (await session_of(platform, session_id)).secrets_boot == part["boot"]
            (event,) = await node_events(platform, head, "%cluster secrets were asked for twice%")
            assert event.tenant_id == "acme" and event.from_state == event.to_state == "active"

            await _report_tokens_expire_and_rotate(platform, http, part, body["report_token"])
    finally:
        await close_boot_sessions(platform, head)

    # A worker's secrets never carry the CA key (nor a report token).
    await open_boot_session(platform, worker)
    try:
        async with boot_service(platform) as http:
            part = await boot(http, await mac_of(platform, worker))
            secrets = await http.post(
                part["cluster"]["secrets_url"], headers=bearer(part["phone_home"]["token"])
            )
            assert secrets.status_code == 200, secrets.text
            body = secrets.json()
            assert "ca_key" not in body and "report_token" not in body
            assert "JoinConfiguration" in body["kubeadm_config"]
    finally:
        await close_boot_sessions(platform, worker)
    async with platform.sessions() as session:
        assert (await session.get_one(Cluster, uuid.UUID(cluster_id))).ca_key_holder == head


async def _report_tokens_expire_and_rotate(
    platform: Platform, http: httpx.AsyncClient, part: dict[str, Any], first: str
) -> None:
    """Each accepted report's answer carries a fresh token: reporting with the latest one keeps
    working past the first one's expiry."""
    url, report = part["cluster"]["report_url"], {"nodes": [], "verification": None}
    cluster_id = uuid.UUID(part["cluster"]["id"])
    async with platform.sessions() as session:
        reported = (await session.get_one(Cluster, cluster_id)).reported_at
    answer = await http.post(url, json=report, headers=bearer(first))
    assert answer.status_code == 200, answer.text
    assert answer.json()["members"]
    for bad in ("x.y.z", first.rsplit(".", 1)[0] + ".forged", part["phone_home"]["token"]):
        refused = await http.post(url, json=report, headers=bearer(bad))
        assert refused.status_code == 401, (bad, refused.text)
    await asyncio.sleep(REPORT_TTL / 2 + 0.5)
    answer = await http.post(url, json=report, headers=bearer(answer.json()["report_token"]))
    assert answer.status_code == 200, answer.text  # the rotated token works
    latest = answer.json()["report_token"]
    await asyncio.sleep(REPORT_TTL / 2)
    expired = await http.post(url, json=report, headers=bearer(first))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"], expired.text
    assert expired.headers["content-type"] == "application/problem+json"
    answer = await http.post(url, json=report, headers=bearer(latest))
    assert answer.status_code == 200, answer.text  # rotated after the first one: still good

    # Meanwhile the lab's head node kept reporting with the token each answer gave it.
    async def reported_since() -> bool:
        async with platform.sessions() as session:
            row = await session.get_one(Cluster, cluster_id)
            return (
                reported is not None and row.reported_at is not None
                and row.reported_at > reported and row.report != report
            )  # fmt: skip

    await eventually(reported_since, 10)
