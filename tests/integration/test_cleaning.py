"""Cleaning between tenants on the simulated lab: a release boots the node's agent image,
which wipes every disk and reports; only a verified clean makes the node available, and a
failed one leaves it in maintenance until an operator's release cleans it. (The QEMU node's
real disk: tests/integration/test_qemu_node.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select, update

from inventory import skus
from inventory.models import Event, Node
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18620, lab_control=18621, redfish=18622, ipmi_base=19900)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    catalog = tmp_path_factory.mktemp("skus") / "skus.yaml"  # the lab's, and one of its own
    quick = {**skus.get("lab-h100x8").model_dump(), "name": "quick-clean",
             "clean_steps": ["burn_in", "erase_disks"]}  # fmt: skip
    catalog.write_text(skus.CATALOG.read_text() + yaml.safe_dump([quick]))
    async with running_platform(
        name="t_cleaning", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("cleaning"), ports=PORTS, nodes=4, boot_delay=0.1,
        extra_settings={"clean_timeout_seconds": 60, "sku_catalog": catalog},
    ) as running:  # fmt: skip
        assert await running.enroll_lab() == ["lab-001", "lab-002", "lab-003", "lab-004"]
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
    # The default clean steps, in order: wipe, inspect (against the SKU), burn-in.
    assert lab["agent_steps"] == ["erase_disks", "inspect", "burn_in"]
    disks = ", ".join(f"/dev/nvme{i}n1 (3662830 MiB, nvme-format, verified)" for i in (0, 1))
    assert (
        f"cleaned: {disks}; hardware and firmware match SKU lab-h100x8;"
        " GPU diagnostics (dcgmi diag -r 1 -j): 8 results, none failed;"
        " no memory test run by the agent"
    ) in await reasons(platform, "lab-001")


async def test_a_gpu_lost_in_the_last_tenants_time_keeps_the_node_out(
    platform: Platform,
) -> None:
    """The clean's inspection checks the node against its SKU again."""
    await provision(platform, "lab-003")
    await platform.lab_put("/lab/nodes/lab-003/faults", {"gpus_missing": 2})
    node = await platform.release("lab-003")
    assert node["state"] == "maintenance"
    assert node["maintenance_reason"] == "cleaning: GPUs: SKU lab-h100x8 has 8, found 6"
    assert len(node["hardware"]["gpus"]) == 6


async def test_a_skus_clean_steps_run_in_its_order(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An operator's SKU orders the burn-in first and leaves the inspection out."""
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-004").values(sku="quick-clean"))
    await provision(platform, "lab-004")
    node = await platform.release("lab-004")
    assert node["state"] == "available", node
    assert (await platform.lab_node("lab-004"))["agent_steps"] == ["burn_in", "erase_disks"]
    reason = [r for r in await reasons(platform, "lab-004") if r.startswith("cleaned:")][-1]
    assert "SKU" not in reason and "GPU diagnostics (dcgmi diag -r 1 -j)" in reason


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
