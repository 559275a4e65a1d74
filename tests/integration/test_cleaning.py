"""Cleaning between tenants on the simulated lab: a release boots the node's agent image,
which wipes every disk and reports; only a verified clean makes the node available, and a
failed one leaves it in maintenance until an operator's release cleans it. (The QEMU node's
real disk: tests/integration/test_qemu_node.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select

from inventory.models import Event
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18620, lab_control=18621, redfish=18622, ipmi_base=19900)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_cleaning", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("cleaning"), ports=PORTS, nodes=2, boot_delay=0.1,
        extra_settings={"clean_timeout_seconds": 60},
    ) as running:  # fmt: skip
        assert await running.enroll_lab() == ["lab-001", "lab-002"]
        yield running


async def provision(platform: Platform, node_id: str) -> None:
    async with platform.api() as api:
        reply = await api.post(f"/v1/nodes/{node_id}/provision", json={"image": "lab-sim"})
        assert reply.status_code == 202, reply.text
    node = await platform.wait_state(node_id, {"active", "failed"})
    assert node["state"] == "active", node["last_error"]


async def reasons(platform: Platform, node_id: str) -> list[str]:
    async with platform.sessions() as session:
        rows = await session.scalars(
            select(Event.reason).where(Event.resource_id == node_id).order_by(Event.id)
        )
        return [r for r in rows if r]


async def test_a_released_node_is_wiped_by_its_agent_before_it_is_available(
    platform: Platform,
) -> None:
    await provision(platform, "lab-001")
    lab = await platform.lab_node("lab-001")
    assert all(disk["written"] for disk in lab["disks"])  # the tenant's OS wrote to them
    async with platform.api() as api:
        assert (await api.get("/v1/nodes/lab-001")).json()["needs_cleaning"] is True

    node = await platform.release("lab-001")
    assert node["state"] == "available", node
    assert node["needs_cleaning"] is False and node["agent_image"] == "lab-sim"
    lab = await platform.lab_node("lab-001")
    assert not any(disk["written"] for disk in lab["disks"])
    # Powered on once to provision, once to clean; off and with no boot override after.
    assert lab["counters"]["power_on"] == 2 and lab["power"] == "off"
    assert lab["boot_device"] == "none"
    assert any(
        r.startswith("cleaned: /dev/nvme0n1 (3662830 MiB, nvme-format, verified)")
        for r in await reasons(platform, "lab-001")
    )


async def test_a_failed_wipe_leaves_the_node_in_maintenance_until_a_clean_succeeds(
    platform: Platform,
) -> None:
    await provision(platform, "lab-002")
    await platform.lab_put("/lab/nodes/lab-002/faults", {"wipe_fails": True})
    node = await platform.release("lab-002")
    assert node["state"] == "maintenance"
    assert node["maintenance_reason"] == (
        "cleaning: /dev/nvme0n1: nvme-format: I/O error (lab fault wipe_fails);"
        " /dev/nvme1n1: nvme-format: I/O error (lab fault wipe_fails)"
    )
    assert node["needs_cleaning"] is True and node["tenant_id"] is None
    lab = await platform.lab_node("lab-002")
    assert all(disk["written"] for disk in lab["disks"]) and lab["power"] == "off"
    async with platform.api() as api:
        # Never allocated, and not returned to service by hand while dirty.
        back = await api.delete("/v1/nodes/lab-002/maintenance")
        assert back.status_code == 409 and back.json()["type"].endswith("node-needs-cleaning")
        again = await api.post("/v1/nodes/lab-002/provision", json={"image": "lab-sim"})
        assert again.status_code == 409, again.text

    await platform.lab_put("/lab/nodes/lab-002/faults", {"wipe_fails": False})  # disk replaced
    node = await platform.release("lab-002")  # the operator's release cleans it again
    assert node["state"] == "available" and node["needs_cleaning"] is False
    assert node["maintenance_reason"] is None
    assert not any(disk["written"] for disk in (await platform.lab_node("lab-002"))["disks"])
