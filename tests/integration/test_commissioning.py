"""Commissioning on the simulated lab: an enrolled node is `inspecting` until its agent's
hardware report matches its SKU (then `available`), or goes to `maintenance` naming the
differences; an operator commissions it again once fixed. (A QEMU node's real inspection:
tests/integration/test_qemu_node.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select, update
from typer.testing import CliRunner

from cli.main import app as cli_app
from inventory import skus
from inventory.models import Event, Node
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18630, lab_control=18631, redfish=18632, ipmi_base=19910)
NEWER_BMC = "lab-h100x8-bmc-2.10"

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    catalog = tmp_path_factory.mktemp("skus") / "skus.yaml"  # the lab's, and one of its own
    newer = {**skus.get("lab-h100x8").model_dump(), "name": NEWER_BMC,
             "bmc_firmware_version": "2.10"}  # fmt: skip
    catalog.write_text(skus.CATALOG.read_text() + yaml.safe_dump([newer]))
    async with running_platform(
        name="t_commissioning", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("commissioning"), ports=PORTS, nodes=4, boot_delay=0.1,
        extra_settings={"commission_on_enroll": True, "inspect_timeout_seconds": 60,
                        "sku_catalog": catalog},
    ) as running:  # fmt: skip
        yield running


async def enroll(platform: Platform, node_id: str, **changes: Any) -> dict[str, Any]:
    """Enroll the lab's record of the node (with `changes`) and wait for its commissioning."""
    record = {**await platform.lab_node_record(node_id), **changes}
    async with platform.api() as api:
        reply = await api.post("/v1/nodes", json=record)
        assert reply.status_code == 201, reply.text
        assert reply.json()["state"] == "inspecting"  # never available before it is checked
        assert reply.json()["operation"]["kind"] == "commission"
    return await platform.wait_state(node_id, {"available", "maintenance"})


async def test_a_node_whose_hardware_matches_its_sku_becomes_available(
    platform: Platform,
) -> None:
    node = await enroll(platform, "lab-001")
    assert node["state"] == "available", node
    assert node["sku"] == "lab-h100x8"  # the catalog's match for its GPU
    hardware = node["hardware"]
    assert len(hardware["gpus"]) == 8 and hardware["cpus"] == 224
    assert [d["device"] for d in hardware["disks"]] == ["/dev/nvme0n1", "/dev/nvme1n1"]
    assert hardware["bmc_firmware_version"] == "1.00"  # Get Device ID of its IPMI BMC
    lab = await platform.lab_node("lab-001")
    assert lab["power"] == "off" and lab["boot_device"] == "none"
    async with platform.sessions() as session:
        reasons = list(
            await session.scalars(
                select(Event.reason).where(Event.resource_id == "lab-001").order_by(Event.id)
            )
        )
    assert (
        "inspected: 224 CPUs, 2047.0 GiB, 2 disks, 2 NICs, 8 GPUs; matches SKU lab-h100x8;"
        " GPU diagnostics (dcgmi diag -r 1 -j): 8 results, none failed;"
        " no memory test run by the agent"  # a simulated node's memory is not there to test
    ) in reasons


async def test_a_node_missing_a_gpu_goes_to_maintenance_until_it_is_fixed(
    platform: Platform,
) -> None:
    await platform.lab_put("/lab/nodes/lab-002/faults", {"gpus_missing": 1})
    node = await enroll(platform, "lab-002")
    assert node["state"] == "maintenance"
    assert node["maintenance_reason"] == "commissioning: GPUs: SKU lab-h100x8 has 8, found 7"
    assert len(node["hardware"]["gpus"]) == 7  # what it found is kept for the operator
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-002/provision", json={"image": "lab-sim"})
        assert reply.status_code == 409  # never allocated

    await platform.lab_put("/lab/nodes/lab-002/faults", {"gpus_missing": 0})  # GPU reseated
    cli = CliRunner(env={"METALPLANE_TOKEN": platform.token})  # the operator's CLI
    done = await asyncio.to_thread(
        cli.invoke, cli_app, ["nodes", "commission", "lab-002", "--api-url", platform.api_url]
    )
    assert done.exit_code == 0, done.output
    async with platform.api() as api:
        node = (await api.get("/v1/nodes/lab-002")).json()
    assert node["state"] == "available" and node["maintenance_reason"] is None
    assert node["hardware"]["bmc_firmware_version"] == "1.00"  # its Redfish manager's


async def test_a_failed_gpu_diagnostic_sends_the_node_to_maintenance(platform: Platform) -> None:
    """The node's burn-in runs DCGM's diagnostic; its output (NVIDIA's recording of a run
    whose stress test failed on three GPUs) is parsed by the platform."""
    await platform.lab_put("/lab/nodes/lab-004/faults", {"gpu_diag_fails": True})
    node = await enroll(platform, "lab-004")
    assert node["state"] == "maintenance"
    reason = node["maintenance_reason"]
    assert reason.startswith(
        "commissioning: GPU diagnostics: sm_stress on GPU 0 failed: Max stress level of 2128.7"
        " did not exceed desired stress level of 3000.0 for GPU 0; GPU diagnostics: sm_stress"
        " on GPU 2 failed:"
    ), reason
    assert reason.count("GPU diagnostics:") == 3


async def test_an_enrolled_sku_is_checked_and_an_unknown_one_refused(platform: Platform) -> None:
    async with platform.api() as api:
        record = {**await platform.lab_node_record("lab-003"), "sku": "no-such-sku"}
        reply = await api.post("/v1/nodes", json=record)
        assert reply.status_code == 422 and reply.json()["type"].endswith("unknown-sku")
        assert (await api.get("/v1/nodes/lab-003")).status_code == 404  # nothing enrolled
    node = await enroll(platform, "lab-003", sku="lab-l40sx4")
    assert node["state"] == "maintenance"
    assert node["maintenance_reason"] == (
        "commissioning: GPUs: SKU lab-l40sx4 has 4, found 8;"
        " GPU model: SKU lab-l40sx4 has L40S, found H100 80GB HBM3"
    )


async def test_a_node_that_may_hold_a_tenants_data_is_not_commissioned(
    platform: Platform,
) -> None:
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-sim"})
        assert reply.status_code == 202, reply.text
        await platform.wait_state("lab-001", {"active"})
        refused = await api.post("/v1/nodes/lab-001/commission")
        assert refused.status_code == 409, refused.text  # active: release it (and clean) first


async def test_a_bmc_firmware_other_than_the_skus_sends_the_node_to_maintenance(
    platform: Platform,
) -> None:
    """The BMC's firmware is read from the BMC itself (the agent cannot): lab-003 (its GPUs
    now matching its SKU) is given a SKU that wants another version than its BMC reports."""
    async with platform.sessions.begin() as session:
        await session.execute(update(Node).where(Node.id == "lab-003").values(sku=NEWER_BMC))
    async with platform.api() as api:
        reply = await api.post("/v1/nodes/lab-003/commission")
        assert reply.status_code == 202, reply.text
        await platform.client.get_workflow_handle(reply.json()["workflow_id"]).result()
        node = (await api.get("/v1/nodes/lab-003")).json()
    assert node["state"] == "maintenance"
    assert node["maintenance_reason"] == (
        f"commissioning: BMC firmware: SKU {NEWER_BMC} wants 2.10, found 1.00"
    )
