"""CommissionNode: the agent's inspection checked against the SKU; every step's failure and
cancel point ends with the node in maintenance."""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ActivityError, CancelledError

from activities.baremetal import BootDeviceRequest, PowerRequest, PrepareNetworkBoot
from activities.inventory import ClaimCommission, FinishOperation, RecordInspection
from core.contracts import (
    COMMISSION_NODE,
    QUERY_PHASE,
    TASK_QUEUE_BAREMETAL,
    CommissionNodeInput,
    OperationResult,
    node_workflow_id,
)

from .conftest import Plane, failure, settled
from .doubles import HARDWARE_FACTS, Call, error

pytestmark = pytest.mark.timeout(30)

NODE = "n1"
WID = node_workflow_id(NODE)

STEPS: list[Call] = [
    ("claim_node_for_commission", ClaimCommission(NODE, WID, ANY)),
    ("prepare_network_boot", PrepareNetworkBoot(NODE, "supermicro", "gpu-default")),
    ("ensure_power", PowerRequest(NODE, "on")),
    ("read_bmc_firmware", NODE),
    ("record_inspection", RecordInspection(NODE, WID, ANY, HARDWARE_FACTS, "1.00")),
    ("ensure_power", PowerRequest(NODE, "off")),
    ("ensure_boot_device", BootDeviceRequest(NODE, "none")),
    ("finish_operation", FinishOperation(NODE, WID, "commission", "available")),
]


def quarantined(reason: str) -> list[Call]:
    return [
        ("ensure_power", PowerRequest(NODE, "off")),
        ("ensure_boot_device", BootDeviceRequest(NODE, "none")),
        ("finish_operation", FinishOperation(NODE, WID, "commission", "maintenance", reason)),
    ]


async def commission(plane: Plane, timeout: float = 1800.0) -> WorkflowHandle:
    return await plane.start(
        COMMISSION_NODE, CommissionNodeInput(NODE, timeout), id=WID,
        task_queue=TASK_QUEUE_BAREMETAL, result_type=OperationResult,
    )  # fmt: skip


async def test_a_node_that_matches_its_sku_becomes_available(plane: Plane) -> None:
    handle = await commission(plane)
    assert await handle.result() == OperationResult(NODE, "available")
    assert plane.doubles.calls == STEPS
    claim, inspection = plane.doubles.of("claim_node_for_commission", "record_inspection")
    assert inspection[1].session_id == claim[1].boot_session_id
    assert await handle.query(QUERY_PHASE) == "available"


async def test_a_node_that_differs_from_its_sku_goes_to_maintenance_with_the_differences(
    plane: Plane,
) -> None:
    differences = ["memory: SKU big needs 64 GiB, found 18.9 GiB", "GPUs: SKU big has 8, found 7"]
    plane.doubles.returns("record_inspection", differences)
    handle = await commission(plane)
    reason = "commissioning: " + "; ".join(differences)
    assert await handle.result() == OperationResult(NODE, "maintenance", reason)
    assert plane.doubles.calls == STEPS[:5] + quarantined(reason)
    assert await handle.query(QUERY_PHASE) == "maintenance"


async def test_an_agent_that_never_reports_times_out_in_virtual_time(plane: Plane) -> None:
    plane.hardware_facts = None
    handle = await commission(plane, timeout=3600)
    result = await handle.result()
    assert result.state == "maintenance"
    assert result.detail == (
        "commissioning: node did not phone home within 3600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert plane.doubles.calls == STEPS[:3] + quarantined(result.detail)


async def test_a_claim_refused_holds_nothing(plane: Plane) -> None:
    plane.doubles.fail("claim_node_for_commission", error("node n1 needs cleaning"))
    handle = await commission(plane)
    assert isinstance(await failure(handle), ActivityError)
    assert plane.doubles.calls == STEPS[:1]


FAILURES = {
    "prepare_boot": ("prepare_network_boot", None, 2),
    "power_on": ("ensure_power", lambda r: r.state == "on", 3),
    "bmc_firmware": ("read_bmc_firmware", None, 4),
    "record": ("record_inspection", None, 5),
    "power_off": ("ensure_power", lambda r: r.state == "off", 6),
    "boot_device": ("ensure_boot_device", None, 7),
    "finish": ("finish_operation", lambda r: r.state == "available", 8),
}


@pytest.mark.parametrize("step", FAILURES)
async def test_a_failed_step_leaves_the_node_in_maintenance(plane: Plane, step: str) -> None:
    name, when, ran = FAILURES[step]
    plane.doubles.fail(name, "it broke", when=when, times=1)
    handle = await commission(plane)
    assert (await handle.result()).state == "maintenance"
    assert plane.doubles.calls == STEPS[:ran] + quarantined("commissioning: it broke")


CANCELS = {
    "prepare_boot": ("prepare_network_boot", None, 2),
    "report_wait": (None, None, 3),
    "bmc_firmware": ("read_bmc_firmware", None, 4),
    "record": ("record_inspection", None, 5),
}


@pytest.mark.parametrize("where", CANCELS)
async def test_a_cancelled_commissioning_leaves_the_node_in_maintenance(
    plane: Plane, where: str
) -> None:
    name, when, ran = CANCELS[where]
    rule = plane.doubles.block(name, when=when) if name else None
    if rule is None:
        plane.hardware_facts = None
    handle = await commission(plane)
    if rule is not None:
        await rule.entered.wait()
    else:  # the power-on done and the workflow waiting for the report (nothing in flight)
        await settled(handle, completed=3)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == STEPS[:ran] + quarantined("cancelled")
