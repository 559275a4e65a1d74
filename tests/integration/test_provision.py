"""ProvisionNode, RebootNode and ReleaseNode end to end: real API, workers, Temporal,
PostgreSQL and BMC simulators speaking IPMI over UDP and Redfish over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select, update
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from typer.testing import CliRunner

from cli.main import app as cli_app
from core.contracts import REBOOT_NODE, TASK_QUEUE_BAREMETAL, RebootNodeInput, node_workflow_id
from inventory import nodes
from inventory.models import Event, Node
from tests.platform import Platform, Ports, running_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

PORTS = Ports(api=18200, lab_control=18300, redfish=18301, ipmi_base=19300)
NODES = 14


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    data_dir: Path = tmp_path_factory.mktemp("provision")
    async with running_platform(
        name="t_provision", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=data_dir, ports=PORTS, nodes=NODES, phone_home_timeout=60,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        yield running


async def provision(platform: Platform, node_id: str, image: str = "lab-sim") -> dict:
    async with platform.api() as api:
        reply = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": image})
    assert reply.status_code == 202, reply.text
    assert reply.json()["workflow_id"] == node_workflow_id(node_id)
    return reply.json()


async def test_nodes_are_enrolled_without_credentials(platform: Platform) -> None:
    async with platform.api() as api:
        listing = (await api.get("/v1/nodes")).json()
    assert len(listing["items"]) == NODES
    assert {n["state"] for n in listing["items"]} == {"available"}
    assert "password" not in str(listing)
    assert {n["bmc"]["protocol"] for n in listing["items"]} == {"ipmi", "redfish"}


async def test_provision_over_ipmi_and_over_redfish(platform: Platform) -> None:
    nodes = {n["id"]: n for n in await platform.lab_nodes()}
    ipmi = next(i for i, n in sorted(nodes.items()) if n["bmc"]["protocol"] == "ipmi")
    redfish = next(i for i, n in sorted(nodes.items()) if n["bmc"]["protocol"] == "redfish")
    for node_id in (ipmi, redfish):
        await provision(platform, node_id)
    for node_id in (ipmi, redfish):
        node = await platform.wait_state(node_id, {"active", "failed"})
        assert node["state"] == "active", node["last_error"]
        assert node["image"] == "lab-sim"
        assert node["facts"]["iommu_mode"] == "passthrough"
        lab = await platform.lab_node(node_id)
        assert lab["power"] == "on"
        assert lab["boot_device"] == "disk" and lab["boot_persistent"] is True
        assert lab["counters"]["power_on"] == 1
        assert lab["boots"] == 1
        # The BIOS now carries the profile: a second read-compare would change nothing.
        assert lab["counters"]["bios_patch"] == 1

    async with platform.api() as api:
        reply = await api.post(f"/v1/nodes/{ipmi}/release")
        assert reply.status_code == 202, reply.text
    node = await platform.wait_state(ipmi, {"available", "failed"})
    assert node["state"] == "available" and node["image"] is None
    assert (await platform.lab_node(ipmi))["power"] == "off"


async def test_an_operator_reboot_power_cycles_an_active_node(platform: Platform) -> None:
    async with platform.api() as api:
        active = (await api.get("/v1/nodes", params={"state": "active"})).json()["items"]
        node_id = active[0]["id"]  # provisioned by the test before
        available = (await api.get("/v1/nodes", params={"state": "available"})).json()["items"]
        refused = await api.post(f"/v1/nodes/{available[0]['id']}/reboot")
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"] == "urn:metalplane:problem:invalid-node-state"
        before = (await platform.lab_node(node_id))["counters"]
        reply = await api.post(f"/v1/nodes/{node_id}/reboot", json={"hard": False})
        assert reply.status_code == 202, reply.text
        assert reply.json()["operation"] == "reboot"
        busy = await api.post(f"/v1/nodes/{node_id}/reboot")  # one operation per node
        assert busy.status_code == 409, busy.text
    node = await platform.wait_state(node_id, {"active", "failed"})
    assert node["state"] == "active", node["last_error"]
    assert node["operation"]["kind"] == "reboot"
    lab = await platform.lab_node(node_id)
    # The ACPI power button (its OS turns it off), then power on: it boots its disk again.
    assert lab["counters"]["soft_off"] == before["soft_off"] + 1
    assert lab["counters"]["power_on"] == before["power_on"] + 1
    assert lab["power"] == "on" and lab["boot_device"] == "disk"
    async with platform.sessions() as session:
        states = await session.scalars(
            select(Event.to_state)
            .where(Event.resource_id == node_id, Event.workflow_id == node_workflow_id(node_id))
            .order_by(Event.id)
        )
        assert list(states)[-2:] == ["rebooting", "active"]


async def test_a_cancelled_reboot_fails_the_node_and_an_sre_reset_completes_it(
    platform: Platform,
) -> None:
    async with platform.api() as api:
        active = (await api.get("/v1/nodes", params={"state": "active"})).json()["items"]
    node_id = active[0]["id"]
    await platform.set_faults(node_id, delay_seconds=1.0)  # a slow BMC: time to cancel
    try:
        async with platform.api() as api:
            reply = await api.post(f"/v1/nodes/{node_id}/reboot", json={"hard": True})
            assert reply.status_code == 202, reply.text
        # Cancelled while the BMC powers it off: the node is failed, once that command ended
        # (one still running could turn it off after the reset's run turned it on).
        await platform.wait_activity(node_workflow_id(node_id), "ensure_power")
        await platform.client.get_workflow_handle(node_workflow_id(node_id)).cancel()
        node = await platform.wait_state(node_id, {"failed", "active"})
        assert node["state"] == "failed" and node["last_error"] == "cancelled", node
        assert (await platform.lab_node(node_id))["power"] == "off"
    finally:
        await platform.set_faults(node_id, delay_seconds=0.0)
    await platform.sre_reset(node_workflow_id(node_id), "the operator wants the reboot after all")
    node = await platform.wait_state(node_id, {"active"})
    assert node["operation"]["kind"] == "reboot"


async def test_a_reboot_cancelled_before_it_starts_leaves_the_node_active(
    platform: Platform,
) -> None:
    async with platform.api() as api:
        active = (await api.get("/v1/nodes", params={"state": "active"})).json()["items"]
    node_id, workflow_id = active[0]["id"], node_workflow_id(active[0]["id"])
    before = (await platform.lab_node(node_id))["counters"]
    # What the API does, but the workflow starts late: the cancel comes before its first task,
    # where Temporal keeps it, so a reset of this run could only be cancelled again.
    async with platform.sessions.begin() as session:
        await nodes.claim_for_reboot(session, node_id, workflow_id=workflow_id)
    handle = await platform.client.start_workflow(
        REBOOT_NODE, RebootNodeInput(node_id=node_id, hard=True), id=workflow_id,
        task_queue=TASK_QUEUE_BAREMETAL, start_delay=timedelta(seconds=30),
    )  # fmt: skip
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    node = await platform.wait_state(node_id, {"active", "failed"})
    assert node["state"] == "active" and node["last_error"] is None, node
    assert (await platform.lab_node(node_id))["counters"] == before  # its BMC never asked
    async with platform.sessions() as session:
        last = await session.scalar(
            select(Event).where(Event.resource_id == node_id).order_by(Event.id.desc()).limit(1)
        )
    assert last is not None
    assert (last.from_state, last.to_state) == ("rebooting", "active")
    assert last.reason == "reboot cancelled before the power-off"


async def test_eight_nodes_at_once(platform: Platform) -> None:
    batch = [f"lab-{i:03d}" for i in range(3, 11)]
    await asyncio.gather(*(provision(platform, n) for n in batch))
    finished = await asyncio.gather(*(platform.wait_state(n, {"active", "failed"}) for n in batch))
    assert [n["state"] for n in finished] == ["active"] * 8, [n["last_error"] for n in finished]


async def test_provisioning_survives_30_percent_packet_loss(platform: Platform) -> None:
    node_id = "lab-011"
    assert (await platform.lab_node(node_id))["bmc"]["protocol"] == "ipmi"
    await platform.set_faults(node_id, drop_rate=0.3)
    try:
        await provision(platform, node_id)
        node = await platform.wait_state(node_id, {"active", "failed"}, timeout=240)
    finally:
        await platform.set_faults(node_id, drop_rate=0.0)
    assert node["state"] == "active", node["last_error"]
    assert (await platform.lab_node(node_id))["counters"]["power_on"] == 1


async def test_wrong_kernel_argument_fails_then_sre_reset_completes(platform: Platform) -> None:
    node_id = "lab-012"
    async with platform.sessions.begin() as session:  # an operator's bad per-node override
        await session.execute(
            update(Node).where(Node.id == node_id).values(extra_kernel_args=["iommu=off"])
        )
    await provision(platform, node_id)
    node = await platform.wait_state(node_id, {"active", "failed"})
    assert node["state"] == "failed"
    assert "verif" in node["last_error"] and "iommu" in node["last_error"]
    lab = await platform.lab_node(node_id)
    assert lab["power"] == "off" and lab["boot_device"] == "none"

    async with platform.sessions.begin() as session:  # the cause is fixed
        await session.execute(update(Node).where(Node.id == node_id).values(extra_kernel_args=[]))
    await platform.sre_reset(node_workflow_id(node_id), "SRE: kernel argument override removed")
    node = await platform.wait_state(node_id, {"active"}, timeout=120)
    assert node["facts"]["iommu_mode"] == "passthrough"


async def _snapshot(platform: Platform) -> list[tuple[str, str]]:
    async with platform.api() as api:
        return [(n["id"], n["state"]) for n in (await api.get("/v1/nodes")).json()["items"]]


async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(platform: Platform) -> None:
    before = await _snapshot(platform)
    record = (await platform.lab_nodes())[0] | {"id": "new-node"}
    async with platform.api() as api:
        cases = {
            "unknown node": await api.post("/v1/nodes/nope/provision", json={"image": "lab-sim"}),
            "unknown image": await api.post(
                "/v1/nodes/lab-013/provision", json={"image": "no-such-image"}
            ),
            "image without artifacts": await api.post(
                "/v1/nodes/lab-013/provision", json={"image": "ubuntu-22.04-gpu"}
            ),
            "malformed MAC": await api.post(
                "/v1/nodes", json=record | {"macs": ["52:54:00:zz:00:01"]}
            ),
            "duplicate MAC": await api.post("/v1/nodes", json=record),
            "missing body": await api.post("/v1/nodes/lab-013/provision"),
        }
    async with platform.api(token="not-a-jwt") as bad:
        cases["invalid token"] = await bad.get("/v1/nodes")
    async with platform.api() as api:
        api.headers.pop("Authorization")
        cases["missing token"] = await api.get("/v1/nodes")
    expected = {
        "unknown node": (404, "not-found"),
        "unknown image": (422, "unknown-image"),
        "image without artifacts": (422, "image-not-ready"),
        "malformed MAC": (422, "validation-error"),
        "duplicate MAC": (409, "node-conflict"),
        "missing body": (422, "validation-error"),
        "invalid token": (401, "unauthorized"),
        "missing token": (401, "unauthorized"),
    }
    for case, (status, slug) in expected.items():
        reply = cases[case]
        assert reply.status_code == status, (case, reply.text)
        assert reply.headers["content-type"] == "application/problem+json", case
        assert reply.json()["type"] == f"urn:metalplane:problem:{slug}", case
    assert await _snapshot(platform) == before


async def test_a_node_held_by_an_operation_is_refused_as_busy(platform: Platform) -> None:
    node_id = "lab-013"
    await platform.set_faults(node_id, delay_seconds=1.0)  # a slow BMC: each operation lasts
    try:
        await provision(platform, node_id)
        # claimed by ProvisionNode's first activity, then prepared by a slow BMC
        await platform.wait_activity(node_workflow_id(node_id), "prepare_network_boot")
        async with platform.api() as api:
            again = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"})
            release = await api.post(f"/v1/nodes/{node_id}/release")
            reboot = await api.post(f"/v1/nodes/{node_id}/reboot")
        for refused in (again, release, reboot):
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"] == "urn:metalplane:problem:node-busy"
        node = await platform.wait_state(node_id, {"active", "failed"})
        assert node["state"] == "active", node["last_error"]
        async with platform.api() as api:
            assert (await api.post(f"/v1/nodes/{node_id}/release")).status_code == 202
            # claimed by ReleaseNode's first activity, then powered off by a slow BMC
            await platform.wait_activity(node_workflow_id(node_id), "ensure_power")
            again = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"})
            reboot = await api.post(f"/v1/nodes/{node_id}/reboot")
        for refused in (again, reboot):
            assert refused.status_code == 409, refused.text
            assert refused.json()["type"] == "urn:metalplane:problem:node-busy", refused.text
            assert "is cleaning" in refused.json()["detail"]
    finally:
        await platform.set_faults(node_id, delay_seconds=0.0)
    node = await platform.wait_state(node_id, {"available", "failed"})
    assert node["state"] == "available", node["last_error"]


async def test_phone_home_token_is_single_use(platform: Platform) -> None:
    async with platform.api() as api:
        refused = await api.post(
            "/boot/phone-home",
            json={"kernel_cmdline": "x"},
            headers={"Authorization": "Bearer 3f1c2a9e-0000-4000-8000-000000000000.forged"},
        )
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:metalplane:problem:invalid-boot-token"


async def test_an_operator_takes_a_free_node_out_of_service_and_back(platform: Platform) -> None:
    node_id, reason = "lab-014", "PSU 2 replaced: burn-in pending"
    url = f"/v1/nodes/{node_id}/maintenance"
    async with platform.api() as ops:  # an operator
        reply = await ops.put(url, json={"reason": reason})
        assert reply.status_code == 200, reply.text
        node = reply.json()
        assert (node["state"], node["maintenance_reason"]) == ("maintenance", reason)
        refused = await ops.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith(":invalid-node-state")
        for bad in ({"reason": ""}, {"reason": "two\nlines"}, {}):
            assert (await ops.put(url, json=bad)).status_code == 422, bad
    async with platform.api(platform.mint("platform-viewer")) as viewer:
        assert (await viewer.put(url, json={"reason": "mine now"})).status_code == 403
        seen = (await viewer.get(f"/v1/nodes/{node_id}")).json()
        assert (seen["state"], seen["maintenance_reason"]) == ("maintenance", reason)
    async with platform.api() as ops:
        back = await ops.delete(url)
        assert back.status_code == 200, back.text
        assert (back.json()["state"], back.json()["maintenance_reason"]) == ("available", None)
        again = await ops.delete(url)
        assert again.status_code == 409 and "not in maintenance" in again.json()["detail"]
    # The same round trip from the CLI.
    cli = CliRunner(env={"METALPLANE_TOKEN": platform.token})
    for argv, state in (
        (["--reason", "reseat the NIC"], "maintenance"), (["--done"], "available"),
    ):  # fmt: skip
        args = ["nodes", "maintenance", node_id, *argv, "--api-url", platform.api_url]
        result = await asyncio.to_thread(cli.invoke, cli_app, args)
        assert result.exit_code == 0 and f"{node_id}: {state}" in result.output, result.output
    refused = await asyncio.to_thread(cli.invoke, cli_app, ["nodes", "maintenance", node_id])
    assert refused.exit_code != 0 and "either --reason or --done" in refused.output
    await provision(platform, node_id)
    assert (await platform.wait_state(node_id, {"active", "failed"}))["state"] == "active"
    async with platform.api() as ops:
        busy = await ops.put(url, json={"reason": "while a tenant could hold it"})
        assert busy.status_code == 409 and "is active" in busy.json()["detail"], busy.text
