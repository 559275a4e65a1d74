"""Rescue and unrescue on the simulated lab: the tenant of an active node boots it into the
agent's ramdisk, which gets the tenant's SSH keys and runs no step (its disks untouched);
another tenant cannot (404); unrescue boots the image back and the node is active again.
(The QEMU node's real rescue ramdisk: tests/integration/test_qemu_node.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update
from typer.testing import CliRunner

from cli.main import app as cli_app
from inventory.models import Node
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18640, lab_control=18641, redfish=18642, ipmi_base=19920)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEzBk4gYv5b6Qk8yQ1f3S2yqk0m7m6q2p9Vh4c1Yx0Zz"

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_rescue", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("rescue"), ports=PORTS, nodes=2, boot_delay=0.1,
    ) as running:  # fmt: skip
        assert await running.enroll_lab() == ["lab-001", "lab-002"]
        async with running.api(running.mint("platform-admin")) as api:
            for tenant in ("acme", "other"):
                reply = await api.post("/v1/tenants", json={"id": tenant, "display_name": tenant})
                assert reply.status_code == 201, reply.text
        async with running.api(running.mint("tenant-admin", tenant="acme")) as api:
            reply = await api.post("/v1/ssh-keys", json={"name": "laptop", "public_key": KEY})
            assert reply.status_code == 201, reply.text
        yield running


async def operation(platform: Platform, token: str, path: str) -> dict[str, Any]:
    """Start the node operation at `path` as `token`, wait for it; the node as the API shows."""
    async with platform.api(token) as api:
        reply = await api.post(path)
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        handle = platform.client.get_workflow_handle(
            accepted["workflow_id"], run_id=accepted["run_id"]
        )
        await handle.result()
        return (await api.get(path.rsplit("/", 1)[0])).json()


async def test_the_tenant_rescues_its_node_and_boots_it_back(platform: Platform) -> None:
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-sim"})
        assert reply.status_code == 202, reply.text
    assert (await platform.wait_state("lab-001", {"active", "failed"}))["state"] == "active"
    async with platform.sessions.begin() as session:  # held by acme, as its cluster would
        await session.execute(update(Node).where(Node.id == "lab-001").values(tenant_id="acme"))
    disks = (await platform.lab_node("lab-001"))["disks"]

    async with platform.api(platform.mint("tenant-admin", tenant="other")) as api:
        refused = await api.post("/v1/nodes/lab-001/rescue")
        assert refused.status_code == 404, refused.text
    acme = platform.mint("tenant-admin", tenant="acme")
    async with platform.api(acme) as api:
        wrong = await api.post("/v1/nodes/lab-001/unrescue")
        assert wrong.status_code == 409 and wrong.json()["type"].endswith("invalid-node-state")

    node = await operation(platform, acme, "/v1/nodes/lab-001/rescue")
    assert node["state"] == "rescue" and node["tenant_id"] == "acme", node
    lab = await platform.lab_node("lab-001")
    assert lab["authorized_keys"] == [KEY]  # the rescue ramdisk's user-data had acme's key
    assert lab["agent_steps"] == [] and lab["disks"] == disks  # no step: disks untouched

    node = await operation(platform, acme, "/v1/nodes/lab-001/unrescue")
    assert node["state"] == "active" and node["image"] == "lab-sim", node
    lab = await platform.lab_node("lab-001")
    assert (lab["boot_device"], lab["boot_persistent"], lab["power"]) == ("disk", True, "on")


async def test_a_node_not_active_cannot_be_rescued(platform: Platform) -> None:
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-002/rescue")
        assert reply.status_code == 409, reply.text
        assert "can be rescued when: active" in reply.json()["detail"]


async def test_an_operator_rescues_and_unrescues_through_the_cli(platform: Platform) -> None:
    cli = CliRunner(env={"METALPLANE_TOKEN": platform.token})
    for command, state in (("rescue", "rescue"), ("unrescue", "active")):
        argv = ["nodes", command, "lab-001", "--api-url", platform.api_url, "--timeout", "120"]
        if command == "rescue":
            argv.append("--hard")
        result = await asyncio.to_thread(cli.invoke, cli_app, argv)
        assert result.exit_code == 0, result.output
        assert f"lab-001: {command} started" in result.output
        async with platform.api() as api:
            assert (await api.get("/v1/nodes/lab-001")).json()["state"] == state
