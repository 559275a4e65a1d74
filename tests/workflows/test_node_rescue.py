"""RescueNode and UnrescueNode: the happy paths, every failing step and a cancel, each
leaving the node failed (nothing of the tenant's undone) for an SRE's reset."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.baremetal import BootDeviceRequest, PowerRequest, PrepareNetworkBoot
from activities.inventory import ClaimRescue, FinishOperation, VerifyNode
from core.contracts import (
    QUERY_PHASE,
    RESCUE_NODE,
    TASK_QUEUE_BAREMETAL,
    UNRESCUE_NODE,
    OperationResult,
    RescueNodeInput,
    node_workflow_id,
)

from .conftest import FACTS, Plane, failure
from .doubles import Call, error

pytestmark = pytest.mark.timeout(30)

NODE = "n1"
WID = node_workflow_id(NODE)
BMC_DOWN = error("BMC of n1 does not answer", "BmcUnreachable")


async def start(plane: Plane, workflow: str, **options: object) -> tuple[WorkflowHandle, str]:
    handle = await plane.start(
        workflow, RescueNodeInput(NODE, **options),  # type: ignore[arg-type]
        id=WID, task_queue=TASK_QUEUE_BAREMETAL, result_type=OperationResult,
    )  # fmt: skip
    name = "claim_node_for_rescue" if workflow == RESCUE_NODE else "claim_node_for_unrescue"
    claim = await plane.doubles.called(name)
    return handle, claim.boot_session_id


def rescue_steps(session: str) -> list[Call]:
    return [
        ("claim_node_for_rescue", ClaimRescue(NODE, WID, session)),
        ("ensure_power", PowerRequest(NODE, "off", soft=True)),
        ("prepare_network_boot", PrepareNetworkBoot(NODE, "supermicro", "gpu-default")),
        ("ensure_power", PowerRequest(NODE, "on")),
        ("finish_operation", FinishOperation(NODE, WID, "rescue", "rescue")),
    ]


def unrescue_steps(session: str, device: str) -> list[Call]:
    return [
        ("claim_node_for_unrescue", ClaimRescue(NODE, WID, session)),
        ("ensure_power", PowerRequest(NODE, "off")),
        ("ensure_boot_device", BootDeviceRequest(NODE, device, persistent=True)),
        ("ensure_power", PowerRequest(NODE, "on")),
    ]


def failed(operation: str, reason: str) -> Call:
    return ("finish_operation", FinishOperation(NODE, WID, operation, "failed", reason))


def assert_failed(cause: BaseException, type_: str, message: str) -> None:
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.message, cause.non_retryable) == (type_, message, True)


async def test_rescue_boots_the_ramdisk_and_leaves_the_node_in_rescue(plane: Plane) -> None:
    handle, session = await start(plane, RESCUE_NODE)
    assert await handle.result() == OperationResult(NODE, "rescue")
    assert plane.doubles.calls == rescue_steps(session)
    assert await handle.query(QUERY_PHASE) == "rescue"


async def test_a_rescue_ramdisk_that_never_phones_home_fails_the_node(plane: Plane) -> None:
    plane.rescue_facts = None
    handle, session = await start(plane, RESCUE_NODE, phone_home_timeout_seconds=600)
    reason = (
        "rescuing: node did not phone home within 600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert_failed(await failure(handle), "RescueFailed", reason)
    assert plane.doubles.calls == [*rescue_steps(session)[:4], failed("rescue", reason)]


async def test_a_rescue_whose_bmc_fails_fails_the_node(plane: Plane) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN)
    handle, session = await start(plane, RESCUE_NODE)
    reason = "rescuing: BMC of n1 does not answer"
    assert_failed(await failure(handle), "RescueFailed", reason)
    assert plane.doubles.calls == [*rescue_steps(session)[:3], failed("rescue", reason)]


async def test_a_cancelled_rescue_fails_the_node(plane: Plane) -> None:
    rule = plane.doubles.block("prepare_network_boot")
    handle, session = await start(plane, RESCUE_NODE)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == [*rescue_steps(session)[:3], failed("rescue", "cancelled")]


async def test_unrescue_of_a_stateless_image_network_boots_and_verifies_it(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.stateless = True
    handle, session = await start(plane, UNRESCUE_NODE)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == [
        *unrescue_steps(session, "network"),
        ("verify_and_activate", VerifyNode(NODE, WID, session, FACTS, "unrescue")),
    ]


async def test_unrescue_of_an_image_on_the_disk_boots_the_disk(plane: Plane) -> None:
    handle, session = await start(plane, UNRESCUE_NODE)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == [
        *unrescue_steps(session, "disk"),
        ("finish_operation", FinishOperation(NODE, WID, "unrescue", "active")),
    ]


async def test_an_unrescue_whose_image_fails_verification_fails_the_node(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.stateless = True
    plane.doubles.returns("verify_and_activate", ["huge pages 1G: expected 16, got 0"])
    handle, _session = await start(plane, UNRESCUE_NODE)
    reason = "rebooting: tuning verification failed: huge pages 1G: expected 16, got 0"
    assert_failed(await failure(handle), "UnrescueFailed", reason)
    assert plane.doubles.calls[-1] == failed("unrescue", reason)
