"""RebootNode and CheckNodeBoot: the reboot of an active node, its phone-home when its image is
stateless, each step's failure and cancel; the check of a reboot the boot service reports."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.baremetal import PowerRequest
from activities.inventory import CheckBoot, ClaimReboot, FinishOperation, RebootPlan, VerifyNode
from core.contracts import (
    CHECK_NODE_BOOT,
    QUERY_PHASE,
    REBOOT_NODE,
    TASK_QUEUE_BAREMETAL,
    NodeBootInput,
    OperationResult,
    RebootNodeInput,
    node_boot_workflow_id,
    node_workflow_id,
)

from .conftest import FACTS, Plane, cancel_acted_on, failure
from .doubles import Call, error

pytestmark = pytest.mark.timeout(30)

NODE = "n1"
WID = node_workflow_id(NODE)
SESSION = "5e55a0e0-0000-4000-8000-000000000001"  # the doubles' open boot session
BOOTS = 3  # boots_so_far's answer: this reboot's phone-home is boot 4


async def reboot(plane: Plane, *, stateless: bool = False, **options: object) -> WorkflowHandle:
    plane.doubles.stateless = stateless
    return await plane.start(
        REBOOT_NODE, RebootNodeInput(NODE, **options),  # type: ignore[arg-type]
        id=WID, task_queue=TASK_QUEUE_BAREMETAL, result_type=OperationResult,
    )  # fmt: skip


def steps(*, soft: bool = True) -> list[Call]:
    return [
        ("claim_node_for_reboot", ClaimReboot(NODE, WID)),
        ("ensure_power", PowerRequest(NODE, "off", soft=soft)),
        ("ensure_power", PowerRequest(NODE, "on")),
        ("finish_operation", FinishOperation(NODE, WID, "reboot", "active")),
    ]


STATELESS_STEPS: list[Call] = [
    ("claim_node_for_reboot", ClaimReboot(NODE, WID)),
    ("ensure_power", PowerRequest(NODE, "off", soft=True)),
    ("boots_so_far", SESSION),
    ("ensure_power", PowerRequest(NODE, "on")),
    ("verify_and_activate", VerifyNode(NODE, WID, SESSION, FACTS, "reboot")),
]


def failed(reason: str) -> Call:
    return ("finish_operation", FinishOperation(NODE, WID, "reboot", "failed", reason))


async def phone_home_after_power_on(plane: Plane, handle: WorkflowHandle) -> None:
    await plane.doubles.called("ensure_power", lambda r: r.state == "on")
    await plane.phone_home(handle.id, SESSION, BOOTS + 1, FACTS)


def assert_reboot_failed(cause: BaseException, message: str) -> None:
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.message, cause.non_retryable) == ("RebootFailed", message, True)


# -- happy paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
async def test_reboot_happy_path(plane: Plane, hard: bool) -> None:
    handle = await reboot(plane, hard=hard)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == steps(soft=not hard)
    assert await handle.query(QUERY_PHASE) == "active"


async def test_reboot_of_a_stateless_node_verifies_this_boots_phone_home(plane: Plane) -> None:
    handle = await reboot(plane, stateless=True)
    await plane.doubles.called("ensure_power", lambda r: r.state == "on")
    # Not this reboot's: a boot begun before the power-off, and another session's boot.
    await plane.phone_home(WID, SESSION, BOOTS, {"stale": 1})
    await plane.phone_home(WID, "00000000-0000-4000-8000-000000000000", BOOTS + 1, {"other": 1})
    await asyncio.sleep(0.3)
    assert "verify_and_activate" not in plane.doubles.names()
    await plane.phone_home(WID, SESSION, BOOTS + 1, FACTS)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == STATELESS_STEPS


# -- failures: nothing is undone, the node is recorded failed with the reason ------------------

REBOOT_FAILURES = {
    "claim": ("claim_node_for_reboot", None, 1),
    "power_off": ("ensure_power", lambda r: r.state == "off", 2),
    "power_on": ("ensure_power", lambda r: r.state == "on", 3),
    "finish": ("finish_operation", lambda r: r.state == "active", 4),
}


@pytest.mark.parametrize("step", REBOOT_FAILURES)
async def test_reboot_step_failure_marks_the_node_failed(plane: Plane, step: str) -> None:
    name, when, ran = REBOOT_FAILURES[step]
    plane.doubles.fail(name, "BMC of n1 does not answer", when=when)
    handle = await reboot(plane)
    reason = "rebooting: BMC of n1 does not answer"
    assert_reboot_failed(await failure(handle), reason)
    assert plane.doubles.calls == [*steps()[:ran], failed(reason)]
    assert await handle.query(QUERY_PHASE) == "failed"


STATELESS_FAILURES = {
    "boots_so_far": (lambda d: d.fail("boots_so_far", "no boot session"), 3,
                     "rebooting: no boot session"),
    "verify_raises": (lambda d: d.fail("verify_and_activate", "db down"), 5, "rebooting: db down"),
    "verify_mismatches": (
        lambda d: d.returns("verify_and_activate", ["gpus: 4, expected 8"]), 5,
        "rebooting: tuning verification failed: gpus: 4, expected 8",
    ),
}  # fmt: skip


@pytest.mark.parametrize("step", STATELESS_FAILURES)
async def test_stateless_reboot_step_failure_marks_the_node_failed(plane: Plane, step: str) -> None:
    knob, ran, reason = STATELESS_FAILURES[step]
    knob(plane.doubles)
    handle = await reboot(plane, stateless=True)
    if ran > 3:
        await phone_home_after_power_on(plane, handle)
    assert_reboot_failed(await failure(handle), reason)
    assert plane.doubles.calls == [*STATELESS_STEPS[:ran], failed(reason)]


async def test_stateless_reboot_without_phone_home_times_out_in_virtual_time(
    plane: Plane,
) -> None:
    began = time.monotonic()
    handle = await reboot(plane, stateless=True, phone_home_timeout_seconds=1800)
    reason = (
        "rebooting: node did not phone home within 1800 s of power-on"
        " (check its boot configuration and console)"
    )
    assert_reboot_failed(await failure(handle), reason)
    assert time.monotonic() - began < 15
    assert plane.doubles.calls == [*STATELESS_STEPS[:4], failed(reason)]


# -- cancels ------------------------------------------------------------------------------------


async def test_reboot_cancelled_while_claiming_an_active_node_leaves_it_active(
    plane: Plane,
) -> None:
    """The claim runs whole (shielded); nothing was touched, so the node is active again."""
    claim = plane.doubles.hold("claim_node_for_reboot")
    handle = await reboot(plane)
    await claim.entered.wait()
    await cancel_acted_on(handle)
    claim.release()
    assert isinstance(await failure(handle), CancelledError)
    back = FinishOperation(NODE, WID, "reboot", "active", "reboot cancelled before the power-off")
    assert plane.doubles.calls == [steps()[0], ("finish_operation", back)]
    assert plane.doubles.cancelled == []
    assert await handle.query(QUERY_PHASE) == "active"


async def test_reboot_cancelled_while_claiming_a_failed_node_marks_it_failed(
    plane: Plane,
) -> None:
    """An SRE's retry of a failed reboot, cancelled in its claim: the node stays failed."""
    claim = plane.doubles.hold("claim_node_for_reboot")  # then:
    plane.doubles.returns(
        "claim_node_for_reboot", lambda r: RebootPlan(r.node_id, False, None, "failed")
    )
    handle = await reboot(plane)
    await claim.entered.wait()
    await cancel_acted_on(handle)
    claim.release()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == [steps()[0], failed("cancelled")]
    assert await handle.query(QUERY_PHASE) == "failed"


REBOOT_CANCELS = {
    "power_off": ("ensure_power", lambda r: r.state == "off", 2),
    "boots_so_far": ("boots_so_far", None, 3),
    "power_on": ("ensure_power", lambda r: r.state == "on", 4),
    "phone_home_wait": (None, None, 4),
    "verify": ("verify_and_activate", None, 5),
}


@pytest.mark.parametrize("where", REBOOT_CANCELS)
async def test_stateless_reboot_cancelled_after_the_claim_marks_the_node_failed(
    plane: Plane, where: str
) -> None:
    name, when, ran = REBOOT_CANCELS[where]
    rule = plane.doubles.block(name, when=when) if name else None
    handle = await reboot(plane, stateless=True)
    if name == "verify_and_activate":
        await phone_home_after_power_on(plane, handle)
    if rule is not None:
        await rule.entered.wait()
    else:
        await plane.doubles.called("ensure_power", lambda r: r.state == "on")
        await asyncio.sleep(0.2)  # the power-on step ended: the workflow waits for the boot
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == [*STATELESS_STEPS[:ran], failed("cancelled")]
    assert plane.doubles.cancelled == (STATELESS_STEPS[ran - 1 : ran] if rule else [])
    assert await handle.query(QUERY_PHASE) == "failed"


# -- CheckNodeBoot ------------------------------------------------------------------------------

BOOT_WID = node_boot_workflow_id(NODE, SESSION, 4)
CHECK = ("check_node_boot", CheckBoot(NODE, BOOT_WID, SESSION, 4, FACTS))


async def check(plane: Plane) -> WorkflowHandle:
    return await plane.start(
        CHECK_NODE_BOOT, NodeBootInput(NODE, SESSION, 4, FACTS), id=BOOT_WID,
        task_queue=TASK_QUEUE_BAREMETAL,
    )  # fmt: skip


async def test_check_node_boot_returns_the_verdict(plane: Plane) -> None:
    plane.doubles.returns("check_node_boot", "after a reboot (boot 4): tuning verification failed")
    handle = await check(plane)
    assert await handle.result() == "after a reboot (boot 4): tuning verification failed"
    assert plane.doubles.calls == [CHECK]


async def test_check_node_boot_failure_fails_the_workflow(plane: Plane) -> None:
    plane.doubles.fail("check_node_boot", error("node n1 does not exist"))
    handle = await check(plane)
    cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "BootCheckFailed"
    assert (cause.message, cause.non_retryable) == ("node n1 does not exist", True)
    assert plane.doubles.calls == [CHECK]


async def test_check_node_boot_cancelled_ends_the_check_in_flight(plane: Plane) -> None:
    rule = plane.doubles.block("check_node_boot")
    handle = await check(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.cancelled == [CHECK]
