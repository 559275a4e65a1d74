"""ProvisionNode and ReleaseNode: every step's failure and cancel, and what each unwinds."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from activities.baremetal import BootDeviceRequest, PowerRequest, PrepareNetworkBoot
from activities.inventory import (
    ClaimProvision,
    FinishOperation,
    OpenDeploy,
    RecordDeploy,
    VerifyNode,
)
from activities.network import NetworkNode, NodePorts
from core.contracts import (
    DETACH_NODE,
    PROVISION_NODE,
    QUERY_PHASE,
    RELEASE_NODE,
    TASK_QUEUE_BAREMETAL,
    TASK_QUEUE_NETWORK,
    DetachNodeInput,
    OperationResult,
    ProvisionNodeInput,
    ReleaseNodeInput,
    node_network_workflow_id,
    node_workflow_id,
)

from .conftest import FACTS, Plane, cancel_acted_on, failure, settled
from .doubles import DEPLOY_FACTS, Call, error, release_steps

pytestmark = pytest.mark.timeout(30)

NODE = "n1"
WID = node_workflow_id(NODE)
IMAGE = "ubuntu-gpu"
NET = "net-a"
BMC_DOWN = error("BMC of n1 does not answer", "BmcUnreachable")


async def provision(plane: Plane, **options: object) -> tuple[WorkflowHandle, str]:
    """Start ProvisionNode; return its handle and the boot session its claim opened."""
    handle = await plane.start(
        PROVISION_NODE, ProvisionNodeInput(NODE, IMAGE, **options),  # type: ignore[arg-type]
        id=WID, task_queue=TASK_QUEUE_BAREMETAL, result_type=OperationResult,
    )  # fmt: skip
    claim = await plane.doubles.called("claim_node_for_provision")
    return handle, claim.boot_session_id


def provision_steps(session: str, *, device: str = "disk", facts: dict = FACTS) -> list[Call]:
    return [
        ("claim_node_for_provision", ClaimProvision(NODE, WID, IMAGE, session)),
        ("leave_tenant_network", NODE),
        ("prepare_network_boot", PrepareNetworkBoot(NODE, "supermicro", "gpu-default")),
        ("ensure_power", PowerRequest(NODE, "on")),
        ("ensure_boot_device", BootDeviceRequest(NODE, device, persistent=True)),
        ("verify_and_activate", VerifyNode(NODE, WID, session, facts)),
    ]


ATTACH_STEPS: list[Call] = [
    ("record_attachment", NetworkNode(NET, NODE)),
    ("move_node_ports", NodePorts(NODE, NET)),
    ("add_node_to_partition", NetworkNode(NET, NODE)),
    ("mark_attached", NetworkNode(NET, NODE)),
]


def compensation(reason: str) -> list[Call]:
    """Powered off, no boot override, `failed` with the reason."""
    return [
        ("ensure_power", PowerRequest(NODE, "off")),
        ("ensure_boot_device", BootDeviceRequest(NODE, "none")),
        ("finish_operation", FinishOperation(NODE, WID, "provision", "failed", reason)),
    ]


def assert_failed(cause: BaseException, type_: str, message: str) -> None:
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.message, cause.non_retryable) == (type_, message, True)


# -- ProvisionNode ------------------------------------------------------------------------------


async def test_provision_happy_path_boots_the_disk_once_verified(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    handle, session = await provision(plane)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == provision_steps(session)
    assert await handle.query(QUERY_PHASE) == "active"


async def test_provision_of_a_stateless_image_network_boots_for_good(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.stateless = True
    handle, session = await provision(plane)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == provision_steps(session, device="network")


async def test_provision_with_a_network_attaches_the_node_as_a_child(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    handle, session = await provision(plane, network_id=NET)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == provision_steps(session) + ATTACH_STEPS


async def test_provision_waits_for_the_phone_home_of_its_own_boot_session(plane: Plane) -> None:
    handle, session = await provision(plane)
    await plane.doubles.called("ensure_power", lambda r: r.state == "on")
    # A phone-home of another (older) boot session changes nothing.
    await plane.phone_home(WID, "00000000-0000-4000-8000-000000000000", facts={"stale": 1})
    await asyncio.sleep(0.3)
    assert await handle.query(QUERY_PHASE) == "booting"
    assert "ensure_boot_device" not in plane.doubles.names()
    await plane.phone_home(WID, session, facts=FACTS)
    await plane.phone_home(WID, session, facts={"second": 1})  # only the first one counts
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == provision_steps(session)


async def test_provision_retries_a_retryable_bmc_failure(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.fail(
        "ensure_power", error("BMC busy", "BmcBusy", retryable=True),
        when=lambda r: r.state == "on", times=2,
    )  # fmt: skip
    handle, session = await provision(plane)
    assert await handle.result() == OperationResult(NODE, "active")
    steps = provision_steps(session)
    assert plane.doubles.calls == [*steps[:4], steps[3], steps[3], *steps[4:]]


async def test_provision_whose_claim_fails_undoes_nothing(plane: Plane) -> None:
    plane.doubles.fail("claim_node_for_provision", error("node n1 is not available"))
    handle, session = await provision(plane)
    cause = await failure(handle)
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, ApplicationError)
    assert cause.cause.message == "node n1 is not available"
    assert plane.doubles.calls == provision_steps(session)[:1]


# (step that fails, how many steps ran, the phase it failed in)
PROVISION_FAILURES = {
    "leave_tenant_network": (
        lambda d: d.fail("leave_tenant_network", "switch leaf1: port Ethernet1 not found"),
        2, "preparing: switch leaf1: port Ethernet1 not found",
    ),
    "prepare_network_boot": (
        lambda d: d.fail("prepare_network_boot", BMC_DOWN),
        3, "preparing: BMC of n1 does not answer",
    ),
    "power_on": (
        lambda d: d.fail("ensure_power", BMC_DOWN, when=lambda r: r.state == "on"),
        4, "preparing: BMC of n1 does not answer",
    ),
    "boot_device": (
        lambda d: d.fail("ensure_boot_device", BMC_DOWN, when=lambda r: r.persistent),
        5, "booting: BMC of n1 does not answer",
    ),
    "verify_raises": (
        lambda d: d.fail("verify_and_activate", error("boot session gone", "NoBootSession")),
        6, "booting: boot session gone",
    ),
    "verify_mismatches": (
        lambda d: d.returns("verify_and_activate", ["gpus: 4, expected 8", "bios: SMT on"]),
        6, "booting: tuning verification failed: gpus: 4, expected 8; bios: SMT on",
    ),
}  # fmt: skip


@pytest.mark.parametrize("step", PROVISION_FAILURES)
async def test_provision_step_failure_compensates(plane: Plane, step: str) -> None:
    knob, ran, reason = PROVISION_FAILURES[step]
    knob(plane.doubles)
    plane.phone_home_facts = FACTS
    handle, session = await provision(plane)
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert plane.doubles.calls == provision_steps(session)[:ran] + compensation(reason)
    assert await handle.query(QUERY_PHASE) == "failed"


async def test_provision_without_phone_home_times_out_in_virtual_time(plane: Plane) -> None:
    began = time.monotonic()
    handle, session = await provision(plane, phone_home_timeout_seconds=3600)
    reason = (
        "booting: node did not phone home within 3600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert time.monotonic() - began < 15  # the hour passed on the test server's clock only
    assert plane.doubles.calls == provision_steps(session)[:4] + compensation(reason)


async def test_provision_whose_attach_fails_unwinds_the_attach_then_the_node(
    plane: Plane,
) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.fail("move_node_ports", "switch leaf2: port Ethernet7 is down")
    handle, session = await provision(plane, network_id=NET)
    reason = "booting: switch leaf2: port Ethernet7 is down"
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert plane.doubles.calls == (
        provision_steps(session) + ATTACH_STEPS[:2]
        + [("leave_network", NetworkNode(NET, NODE))] + compensation(reason)
    )  # fmt: skip


async def test_provision_while_a_port_move_of_the_node_runs_compensates(plane: Plane) -> None:
    """The attach child's id is taken (a DetachNode of the node runs): WorkflowAlreadyStarted."""
    plane.phone_home_facts = FACTS
    detach_rule = plane.doubles.hold("leave_tenant_network", when=lambda n: n == "other")
    detach = await plane.start(
        DETACH_NODE, DetachNodeInput("other"), id=node_network_workflow_id(NODE),
        task_queue=TASK_QUEUE_NETWORK,
    )  # fmt: skip
    await detach_rule.entered.wait()
    handle, session = await provision(plane, network_id=NET)
    cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "ProvisionFailed"
    assert cause.message.startswith("booting: ")
    calls = [c for c in plane.doubles.calls if c != ("leave_tenant_network", "other")]
    assert calls == provision_steps(session) + compensation(cause.message)
    detach_rule.release()
    assert await detach.result() == "detached"


# Where the cancel lands: (a knob that blocks there or None for the phone-home wait, the steps
# that ran up to and including the one cancelled, extra calls before the compensation).
PROVISION_CANCELS = {
    "leave_tenant_network": ("leave_tenant_network", None, 2),
    "prepare_network_boot": ("prepare_network_boot", None, 3),
    "power_on": ("ensure_power", lambda r: r.state == "on", 4),
    "phone_home_wait": (None, None, 4),
    "boot_device": ("ensure_boot_device", lambda r: r.persistent, 5),
    "verify": ("verify_and_activate", None, 6),
}


@pytest.mark.parametrize("where", PROVISION_CANCELS)
async def test_provision_cancelled_at_a_step_compensates(plane: Plane, where: str) -> None:
    name, when, ran = PROVISION_CANCELS[where]
    rule = plane.doubles.block(name, when=when) if name else None
    plane.phone_home_facts = None if where == "phone_home_wait" else FACTS
    handle, session = await provision(plane)
    if rule is not None:
        await rule.entered.wait()
    else:
        await plane.doubles.called("ensure_power", lambda r: r.state == "on")
        while await handle.query(QUERY_PHASE) != "booting":  # noqa: ASYNC110 (a query)
            await asyncio.sleep(0.02)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    steps = provision_steps(session)[:ran]
    assert plane.doubles.calls == steps + compensation("cancelled")
    assert plane.doubles.cancelled == (steps[-1:] if rule else [])
    assert await handle.query(QUERY_PHASE) == "failed"


async def test_provision_cancelled_while_claiming_undoes_nothing(plane: Plane) -> None:
    rule = plane.doubles.block("claim_node_for_provision")
    handle, session = await provision(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == provision_steps(session)[:1]
    assert plane.doubles.cancelled == provision_steps(session)[:1]


async def cancel_while_attaching(plane: Plane) -> tuple[WorkflowHandle, str]:
    plane.phone_home_facts = FACTS
    rule = plane.doubles.block("add_node_to_partition")
    handle, session = await provision(plane, network_id=NET)
    await rule.entered.wait()
    await handle.cancel()
    return handle, session


async def test_provision_cancelled_while_attaching_unwinds_the_attach_then_the_node(
    plane: Plane,
) -> None:
    handle, session = await cancel_while_attaching(plane)
    cause = await failure(handle)
    expected = (
        provision_steps(session) + ATTACH_STEPS[:3]
        + [("leave_network", NetworkNode(NET, NODE))] + compensation("cancelled")
    )  # fmt: skip
    # The reason recorded: test_provision_cancelled_while_attaching_ends_cancelled.
    assert plane.doubles.calls[:-1] == expected[:-1]
    assert plane.doubles.calls[-1][0] == "finish_operation"
    assert plane.doubles.calls[-1][1].state == "failed"
    assert plane.doubles.cancelled == [ATTACH_STEPS[2]]
    assert isinstance(cause, CancelledError | ApplicationError)


async def test_provision_cancelled_while_attaching_ends_cancelled(plane: Plane) -> None:
    handle, _ = await cancel_while_attaching(plane)
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls[-1][1].reason == "cancelled"


async def test_provision_cancelled_during_its_compensation_still_compensates(
    plane: Plane,
) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN)
    power_off = plane.doubles.hold("ensure_power", when=lambda r: r.state == "off")
    handle, session = await provision(plane)
    await power_off.entered.wait()
    await cancel_acted_on(handle)
    power_off.release()
    reason = "preparing: BMC of n1 does not answer"
    await failure(handle)
    assert plane.doubles.calls == provision_steps(session)[:3] + compensation(reason)


# -- ReleaseNode --------------------------------------------------------------------------------


async def release(plane: Plane, timeout: float = 1800.0) -> WorkflowHandle:
    return await plane.start(
        RELEASE_NODE, ReleaseNodeInput(NODE, clean_timeout_seconds=timeout), id=WID,
        task_queue=TASK_QUEUE_BAREMETAL, result_type=OperationResult,
    )  # fmt: skip


RELEASE_STEPS = release_steps(NODE, WID)


def quarantined(reason: str) -> list[Call]:
    """The compensation of a release: powered off, no boot override, in maintenance."""
    return [
        ("ensure_power", PowerRequest(NODE, "off")),
        ("ensure_boot_device", BootDeviceRequest(NODE, "none")),
        ("finish_operation", FinishOperation(NODE, WID, "release", "maintenance", reason)),
    ]


async def test_release_cleans_the_node_then_makes_it_available(plane: Plane) -> None:
    handle = await release(plane)
    assert await handle.result() == OperationResult(NODE, "available")
    assert plane.doubles.calls == RELEASE_STEPS
    opened, judged = plane.doubles.of("open_cleaning_boot", "record_clean")
    assert judged[1].session_id == opened[1].boot_session_id  # the report of its own boot
    assert await handle.query(QUERY_PHASE) == "available"


async def test_release_whose_claim_fails_records_nothing(plane: Plane) -> None:
    plane.doubles.fail("claim_node_for_release", error("node n1 is provisioning"))
    handle = await release(plane)
    cause = await failure(handle)
    assert isinstance(cause, ActivityError)
    assert plane.doubles.calls == RELEASE_STEPS[:1]


async def test_a_failed_wipe_ends_the_release_with_the_node_in_maintenance(
    plane: Plane,
) -> None:
    """The release completes (the tenant no longer holds the node); the node is quarantined
    with the agent's words."""
    plane.doubles.returns("record_clean", ["/dev/nvme1n1: zeroing failed: I/O error"])
    handle = await release(plane)
    reason = "cleaning: /dev/nvme1n1: zeroing failed: I/O error"
    assert await handle.result() == OperationResult(NODE, "maintenance", reason)
    assert plane.doubles.calls == RELEASE_STEPS[:7] + quarantined(reason)
    assert await handle.query(QUERY_PHASE) == "maintenance"


async def test_a_cleaning_boot_that_never_reports_times_out_in_virtual_time(
    plane: Plane,
) -> None:
    plane.clean_facts = None
    handle = await release(plane, timeout=3600)
    reason = (
        "cleaning: node did not phone home within 3600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert (await handle.result()).detail == reason
    assert plane.doubles.calls == RELEASE_STEPS[:6] + quarantined(reason)


# The step that fails: (activity, which of its calls, steps run including it).
RELEASE_FAILURES = {
    "leave_tenant_network": ("leave_tenant_network", None, 2),
    "power_off": ("ensure_power", lambda r: r.soft, 3),
    "open_boot": ("open_cleaning_boot", None, 4),
    "prepare_boot": ("prepare_network_boot", None, 5),
    "power_on": ("ensure_power", lambda r: r.state == "on", 6),
    "record": ("record_clean", None, 7),
    "power_off_after": ("ensure_power", lambda r: r.state == "off" and not r.soft, 8),
    "boot_device": ("ensure_boot_device", None, 9),
    "finish": ("finish_operation", lambda r: r.state == "available", 10),
}


@pytest.mark.parametrize("step", RELEASE_FAILURES)
async def test_a_failed_release_step_leaves_the_node_in_maintenance(
    plane: Plane, step: str
) -> None:
    name, when, ran = RELEASE_FAILURES[step]
    plane.doubles.fail(name, "it broke", when=when, times=1)
    handle = await release(plane)
    assert (await handle.result()).state == "maintenance"
    assert plane.doubles.calls == RELEASE_STEPS[:ran] + quarantined("cleaning: it broke")


async def test_a_bmc_that_fails_the_unwinding_too_is_said_and_the_node_quarantined(
    plane: Plane,
) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN)
    plane.doubles.fail("ensure_power", BMC_DOWN, when=lambda r: r.state == "off" and not r.soft)
    handle = await release(plane)
    reason = "cleaning: BMC of n1 does not answer; unwinding incomplete: BMC of n1 does not answer"
    assert await handle.result() == OperationResult(NODE, "maintenance", reason)
    assert plane.doubles.calls == [
        *RELEASE_STEPS[:5],
        ("ensure_power", PowerRequest(NODE, "off")),
        ("finish_operation", FinishOperation(NODE, WID, "release", "maintenance", reason)),
    ]


RELEASE_CANCELS = {
    "leave_tenant_network": ("leave_tenant_network", None, 2),
    "power_off": ("ensure_power", lambda r: r.soft, 3),
    "prepare_boot": ("prepare_network_boot", None, 5),
    "report_wait": (None, None, 6),
    "record": ("record_clean", None, 7),
    "boot_device": ("ensure_boot_device", None, 9),
}


@pytest.mark.parametrize("where", RELEASE_CANCELS)
async def test_a_cancelled_release_leaves_the_node_in_maintenance(plane: Plane, where: str) -> None:
    """A cancel ends the release after the step in flight and quarantines the node,
    "cancelled": its clean was not verified."""
    name, when, ran = RELEASE_CANCELS[where]
    rule = plane.doubles.block(name, when=when) if name else None
    plane.clean_facts = None if rule is None else plane.clean_facts
    handle = await release(plane)
    if rule is not None:
        await rule.entered.wait()
    else:  # the power-on done and the workflow waiting for the report (nothing in flight)
        await settled(handle, completed=6)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == RELEASE_STEPS[:ran] + quarantined("cancelled")
    assert plane.doubles.cancelled == (RELEASE_STEPS[ran - 1 : ran] if rule else [])


# -- ProvisionNode's direct deploy (an image with a disk image) ---------------------------------


def deploy_steps(session: str, plane: Plane) -> list[Call]:
    """The calls of a direct deploy that goes well: the deploy boot's and the disk boot's
    session ids are the workflow's own (read from the calls)."""
    deploy = next(r for n, r in plane.doubles.calls if n == "open_deploy_boot")
    disk = next((r for n, r in plane.doubles.calls if n == "open_disk_boot"), deploy)
    return [
        ("claim_node_for_provision", ClaimProvision(NODE, WID, IMAGE, session)),
        ("leave_tenant_network", NODE),
        ("open_deploy_boot", OpenDeploy(NODE, WID, deploy.boot_session_id, IMAGE)),
        ("prepare_network_boot", PrepareNetworkBoot(NODE, "supermicro", "gpu-default")),
        ("ensure_power", PowerRequest(NODE, "on")),
        ("record_deploy", RecordDeploy(NODE, WID, deploy.boot_session_id, IMAGE, DEPLOY_FACTS)),
        ("open_disk_boot", OpenDeploy(NODE, WID, disk.boot_session_id, IMAGE)),
        ("ensure_power", PowerRequest(NODE, "off")),
        ("ensure_boot_device", BootDeviceRequest(NODE, "disk", persistent=True)),
        ("ensure_power", PowerRequest(NODE, "on")),
        ("ensure_boot_device", BootDeviceRequest(NODE, "disk", persistent=True)),
        ("verify_and_activate", VerifyNode(NODE, WID, disk.boot_session_id, FACTS)),
    ]


async def test_a_deployed_image_is_written_by_the_agent_then_boots_from_the_disk(
    plane: Plane,
) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.deployed = True
    handle, session = await provision(plane)
    assert await handle.result() == OperationResult(NODE, "active")
    assert plane.doubles.calls == deploy_steps(session, plane)
    sessions = {r.boot_session_id for n, r in plane.doubles.calls if n.startswith("open_")}
    assert len(sessions | {session}) == 3  # the claim's, the deploy boot's, the disk boot's


async def test_a_deploy_whose_report_is_refused_compensates(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.deployed = True
    plane.doubles.returns("record_deploy", ["checksum mismatch: the disk holds 00, the image ab"])
    handle, session = await provision(plane)
    reason = "deploying: checksum mismatch: the disk holds 00, the image ab"
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert plane.doubles.calls == deploy_steps(session, plane)[:6] + compensation(reason)


async def test_a_deploy_agent_that_never_reports_times_out_in_virtual_time(plane: Plane) -> None:
    plane.phone_home_facts = FACTS
    plane.deploy_facts = None
    plane.doubles.deployed = True
    handle, _ = await provision(plane, phone_home_timeout_seconds=3600)
    reason = (
        "deploying: node did not phone home within 3600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert plane.doubles.calls[-3:] == compensation(reason)
    assert [n for n, _ in plane.doubles.calls].count("record_deploy") == 0


async def test_a_disk_that_does_not_boot_times_out_and_compensates(plane: Plane) -> None:
    plane.doubles.deployed = True  # the agent reports; the disk's OS never phones home
    handle, session = await provision(plane, phone_home_timeout_seconds=3600)
    reason = (
        "booting: node did not phone home within 3600 s of power-on"
        " (check its boot configuration and console)"
    )
    assert_failed(await failure(handle), "ProvisionFailed", reason)
    assert plane.doubles.calls == deploy_steps(session, plane)[:10] + compensation(reason)


@pytest.mark.parametrize("where", ["open_deploy_boot", "record_deploy", "open_disk_boot"])
async def test_a_deploy_cancelled_at_a_step_compensates(plane: Plane, where: str) -> None:
    plane.phone_home_facts = FACTS
    plane.doubles.deployed = True
    rule = plane.doubles.block(where)
    handle, _ = await provision(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls[-3:] == compensation("cancelled")
    assert plane.doubles.cancelled[0][0] == where
