"""CreateCluster, ScaleCluster and DeleteCluster with their children (CreateNetwork,
ProvisionNode and its AttachNode, ReleaseNode, DeleteNetwork) on the same test workers; nodes
phone home through the test's boot service and the head node's report is signalled as the API
does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.baremetal import BootDeviceRequest, PowerRequest, PrepareNetworkBoot
from activities.cluster import ClusterEnd, ClusterNode, ClusterPlan, MemberView, Removals
from activities.inventory import ClaimProvision, FinishOperation, VerifyNode
from activities.network import NetworkNode, NetworkOnSwitch, NetworkStateChange, NodePorts
from core.contracts import (
    CREATE_CLUSTER,
    CREATE_NETWORK,
    DELETE_CLUSTER,
    SCALE_CLUSTER,
    TASK_QUEUE_CLUSTER,
    TASK_QUEUE_NETWORK,
    ClusterInput,
    NetworkInput,
    cluster_workflow_id,
    network_workflow_id,
    node_workflow_id,
)

from .conftest import FACTS, Plane, cancel_acted_on, failure, settled
from .doubles import Call, error, in_order, release_steps

pytestmark = pytest.mark.timeout(30)

CLUSTER = "c1"
WID = cluster_workflow_id(CLUSTER)
NET = "net-c1"
IMAGE = "slurm-gpu"
LEAVES = ["leaf1", "leaf2"]
BMC_DOWN = error("BMC does not answer", "BmcUnreachable")
DB_DOWN = error("the inventory does not answer")


def create_network() -> list[Call]:
    return [
        ("list_leaves", None),
        *[("ensure_network_on_switch", NetworkOnSwitch(NET, leaf)) for leaf in LEAVES],
        ("ensure_partition", NET),
        ("set_network_state", NetworkStateChange(NET, "ready", ["creating", "failed"])),
    ]


def delete_network() -> list[Call]:
    return [
        ("set_network_state", NetworkStateChange(NET, "deleting", ["deleting", "failed"])),
        ("list_leaves", None),
        *[("remove_network_from_switch", NetworkOnSwitch(NET, leaf)) for leaf in LEAVES],
        ("remove_partition", NET),
        ("finish_network_delete", NET),
    ]


def provisioned(plane: Plane, node: str, *, ran: int = 10) -> list[Call]:
    """ProvisionNode of `node` (with its attach to the cluster's network), `ran` steps of it."""
    wid = node_workflow_id(node)
    session = next(
        c.boot_session_id
        for n, c in plane.doubles.calls
        if n == "claim_node_for_provision" and c.node_id == node
    )
    target = NetworkNode(NET, node)
    return [
        ("claim_node_for_provision", ClaimProvision(node, wid, IMAGE, session)),
        ("leave_tenant_network", node),
        ("prepare_network_boot", PrepareNetworkBoot(node, "supermicro", "gpu-default")),
        ("ensure_power", PowerRequest(node, "on")),
        ("ensure_boot_device", BootDeviceRequest(node, "disk", persistent=True)),
        ("verify_and_activate", VerifyNode(node, wid, session, FACTS)),
        ("record_attachment", target),
        ("move_node_ports", NodePorts(node, NET)),
        ("add_node_to_partition", target),
        ("mark_attached", target),
    ][:ran]


def provision_compensated(node: str, reason: str) -> list[Call]:
    wid = node_workflow_id(node)
    return [
        ("ensure_power", PowerRequest(node, "off")),
        ("ensure_boot_device", BootDeviceRequest(node, "none")),
        ("finish_operation", FinishOperation(node, wid, "provision", "failed", reason)),
    ]


def released(node: str, *, shrink: bool = False) -> list[Call]:
    return [
        *release_steps(node, node_workflow_id(node)),
        ("forget_cluster_member", ClusterNode(CLUSTER, node, shrink)),
    ]


def quarantined(node: str, ran: int, reason: str, *, shrink: bool = False) -> list[Call]:
    """A member's release whose clean failed at step `ran`: the node is left in maintenance,
    and the release (and with it the cluster's) goes on."""
    wid = node_workflow_id(node)
    return [
        *release_steps(node, wid)[:ran],
        ("ensure_power", PowerRequest(node, "off")),
        ("ensure_boot_device", BootDeviceRequest(node, "none")),
        ("finish_operation", FinishOperation(node, wid, "release", "maintenance", reason)),
        ("forget_cluster_member", ClusterNode(CLUSTER, node, shrink)),
    ]


def unwound(reason: str, members: list[str]) -> list[Call]:
    """CreateCluster's compensation: members released, its own network deleted, failed."""
    return [
        ("cluster_plan", CLUSTER),
        *[call for node in members for call in released(node)],
        ("begin_cluster_network_delete", NET),
        *delete_network(),
        ("fail_cluster", ClusterEnd(CLUSTER, reason)),
    ]


def converged(hosts: list[str], generation: int = 1) -> dict[str, Any]:
    return {
        "nodes": [{"name": h, "state": "idle"} for h in hosts],
        "verification": {"generation": generation, "ok": True, "hosts": hosts},
    }


async def report_when_asked(plane: Plane, handle: WorkflowHandle, hosts: list[str],
                            activities: int) -> None:  # fmt: skip
    """The head node reports every member up and the test job run, once the workflow asked
    for the verification and read the last report (`activities` of its own done by then)."""
    await plane.doubles.called("cluster_report")
    await settled(handle, completed=activities)
    await plane.report(handle.id, converged(hosts))


def assert_failed(cause: BaseException, type_: str, message: str) -> None:
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.message, cause.non_retryable) == (type_, message, True)


def members(*views: tuple[str, str]) -> list[MemberView]:
    return [MemberView(node, f"host-{node}", "compute", state) for node, state in views]


# -- CreateCluster ------------------------------------------------------------------------------


async def create(plane: Plane, **options: Any) -> WorkflowHandle:
    plane.phone_home_facts = FACTS
    return await plane.start(
        CREATE_CLUSTER, ClusterInput(CLUSTER, **options), id=WID, task_queue=TASK_QUEUE_CLUSTER
    )


def create_steps(plane: Plane, *nodes: str) -> list[Call]:
    return [
        ("begin_cluster_create", CLUSTER),
        *create_network(),
        *[call for node in nodes for call in provisioned(plane, node)],
        ("cluster_members", CLUSTER),
        ("request_cluster_verification", CLUSTER),
        ("cluster_report", CLUSTER),
    ]


async def test_create_cluster_happy_path(plane: Plane) -> None:
    handle = await create(plane)
    await report_when_asked(plane, handle, ["host-n1"], activities=4)
    assert await handle.result() == "ready"
    assert in_order(plane.doubles.calls) == in_order(
        [*create_steps(plane, "n1"), ("finish_cluster_operation", ClusterEnd(CLUSTER))]
    )


async def test_create_cluster_of_two_provisions_each_node(plane: Plane) -> None:
    plane.doubles.cluster_plan = ClusterPlan(CLUSTER, IMAGE, NET, True, True, ["n1", "n2"],
                                             ["n1", "n2"])  # fmt: skip
    plane.doubles.returns("cluster_report", converged(["host-n1", "host-n2"]))
    handle = await create(plane)
    assert await handle.result() == "ready"
    for node in ["n1", "n2"]:  # the nodes' children run at once: each in its order
        assert [c for c in plane.doubles.calls if node in repr(c[1])] == provisioned(plane, node)
    # A network already ready is not created again.
    cluster_calls = [c for c in plane.doubles.calls if c[1] == CLUSTER or "ClusterEnd" in repr(c)]
    assert cluster_calls == [
        ("begin_cluster_create", CLUSTER),
        ("cluster_members", CLUSTER),
        ("request_cluster_verification", CLUSTER),
        ("cluster_report", CLUSTER),
        ("finish_cluster_operation", ClusterEnd(CLUSTER)),
    ]


async def test_create_cluster_replaces_a_node_that_fails_provisioning(plane: Plane) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN, when=lambda r: r.node_id == "n1")
    plane.doubles.member_views = members(("spare1", "joining"))
    handle = await create(plane)
    await report_when_asked(plane, handle, ["host-spare1"], activities=5)
    assert await handle.result() == "ready"
    reason = "preparing: BMC does not answer"
    assert in_order(plane.doubles.calls) == in_order([
        ("begin_cluster_create", CLUSTER),
        *create_network(),
        *provisioned(plane, "n1", ran=3),
        *provision_compensated("n1", reason),
        ("replace_cluster_member", ClusterNode(CLUSTER, "n1")),
        *provisioned(plane, "spare1"),
        ("cluster_members", CLUSTER),
        ("request_cluster_verification", CLUSTER),
        ("cluster_report", CLUSTER),
        ("finish_cluster_operation", ClusterEnd(CLUSTER)),
    ])  # fmt: skip


async def test_create_cluster_without_replacements_left_unwinds(plane: Plane) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN, when=lambda r: r.node_id == "n1")
    handle = await create(plane, max_replacements=0)
    reason = "n1: preparing: BMC does not answer; no replacement left (0 used)"
    assert_failed(await failure(handle), "ClusterFailed", reason)
    assert in_order(plane.doubles.calls) == in_order([
        ("begin_cluster_create", CLUSTER),
        *create_network(),
        *provisioned(plane, "n1", ran=3),
        *provision_compensated("n1", "preparing: BMC does not answer"),
        ("cluster_plan", CLUSTER),
        *quarantined("n1", 5, "cleaning: BMC does not answer"),  # its cleaning boot too
        ("begin_cluster_network_delete", NET),
        *delete_network(),
        ("fail_cluster", ClusterEnd(CLUSTER, reason)),
    ])  # fmt: skip


async def test_create_cluster_whose_network_fails_unwinds(plane: Plane) -> None:
    plane.doubles.fail("ensure_partition", "no free pkey")
    handle = await create(plane)
    assert_failed(await failure(handle), "ClusterFailed", "no free pkey")
    network_unwound = [
        *[("remove_network_from_switch", NetworkOnSwitch(NET, leaf)) for leaf in LEAVES],
        ("remove_partition", NET),
        ("set_network_state",
         NetworkStateChange(NET, "failed", ["creating", "failed"], "no free pkey")),
    ]  # fmt: skip
    assert in_order(plane.doubles.calls) == in_order([
        ("begin_cluster_create", CLUSTER),
        *create_network()[:4],
        *network_unwound,
        *unwound("no free pkey", ["n1"]),
    ])  # fmt: skip


async def test_create_cluster_not_ready_in_time_unwinds_in_virtual_time(plane: Plane) -> None:
    began = time.monotonic()
    handle = await create(plane, ready_timeout_seconds=7200)
    reason = (
        "the cluster was not ready within 7200 s: no report from the head node"
        " (is the controller up and on the network?)"
    )
    assert_failed(await failure(handle), "ClusterFailed", reason)
    assert time.monotonic() - began < 20
    assert in_order(plane.doubles.calls) == in_order(
        [*create_steps(plane, "n1"), *unwound(reason, ["n1"])]
    )


async def test_create_cluster_with_an_incomplete_unwinding_says_so(plane: Plane) -> None:
    plane.doubles.fail("ensure_partition", "no free pkey")
    # The member's release cannot even record the node quarantined.
    plane.doubles.fail("finish_operation", DB_DOWN, when=lambda r: r.operation == "release")
    handle = await create(plane)
    reason = "no free pkey; unwinding incomplete: the inventory does not answer"
    assert_failed(await failure(handle), "ClusterFailed", reason)
    calls = plane.doubles.calls
    assert calls[-1] == ("fail_cluster", ClusterEnd(CLUSTER, reason))
    # The network is kept: the member it holds could not be released.
    assert "begin_cluster_network_delete" not in plane.doubles.names()
    assert ("forget_cluster_member", ClusterNode(CLUSTER, "n1")) not in calls


CREATE_CANCELS = {
    "begin": ("begin_cluster_create", None),
    # Reaches CreateCluster as the child's ChildWorkflowError: still a cancellation.
    "network": ("ensure_partition", None),
    "verification": ("request_cluster_verification", None),
    "finish": ("finish_cluster_operation", None),
}


@pytest.mark.parametrize("where", CREATE_CANCELS.values(), ids=list(CREATE_CANCELS))
async def test_create_cluster_cancelled_at_a_step_unwinds(plane: Plane, where: Any) -> None:
    name, when = where
    if name == "finish_cluster_operation":
        plane.doubles.returns("cluster_report", converged(["host-n1"]))
    rule = plane.doubles.block(name, when=when)
    handle = await create(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    calls = plane.doubles.calls
    assert calls[-1] == ("fail_cluster", ClusterEnd(CLUSTER, "cancelled"))
    assert in_order(calls[calls.index(("cluster_plan", CLUSTER)) :]) == in_order(
        unwound("cancelled", ["n1"])
    )
    assert [c[0] for c in plane.doubles.cancelled] == [name]


async def test_create_cluster_cancelled_while_waiting_for_the_head_node_unwinds(
    plane: Plane,
) -> None:
    handle = await create(plane)
    await plane.doubles.called("cluster_report")
    await settled(handle, completed=4)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert in_order(plane.doubles.calls) == in_order(
        [*create_steps(plane, "n1"), *unwound("cancelled", ["n1"])]
    )


async def test_create_cluster_cancelled_while_provisioning_unwinds(plane: Plane) -> None:
    rule = plane.doubles.block("prepare_network_boot")
    handle = await create(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    calls = plane.doubles.calls
    # The child compensated its node, and the cluster released it: no replacement.
    assert "replace_cluster_member" not in plane.doubles.names()
    assert calls[-1] == ("fail_cluster", ClusterEnd(CLUSTER, "cancelled"))


async def test_create_cluster_cancelled_during_its_compensation_finishes_it(
    plane: Plane,
) -> None:
    """to_the_end: the unwinding of a failure is not cut short by a cancel."""
    plane.doubles.fail("ensure_partition", "no free pkey")
    forget = plane.doubles.hold("forget_cluster_member")
    handle = await create(plane)
    await forget.entered.wait()
    await cancel_acted_on(handle)
    forget.release()
    assert_failed(await failure(handle), "ClusterFailed", "no free pkey")
    calls = plane.doubles.calls
    assert in_order(calls[calls.index(("cluster_plan", CLUSTER)) :]) == in_order(
        unwound("no free pkey", ["n1"])
    )
    assert plane.doubles.cancelled == []


# -- ScaleCluster -------------------------------------------------------------------------------

SCALE_PLAN = ClusterPlan(CLUSTER, IMAGE, NET, True, True, ["n3"], ["n1", "n3"])


async def scale(plane: Plane, **options: Any) -> WorkflowHandle:
    plane.phone_home_facts = FACTS
    plane.doubles.cluster_plan = SCALE_PLAN
    return await plane.start(
        SCALE_CLUSTER, ClusterInput(CLUSTER, **options), id=WID, task_queue=TASK_QUEUE_CLUSTER
    )


async def test_scale_up_happy_path(plane: Plane) -> None:
    handle = await scale(plane)
    await report_when_asked(plane, handle, ["host-n1", "host-n3"], activities=4)
    assert await handle.result() == "ready"
    assert in_order(plane.doubles.calls) == in_order([
        ("begin_cluster_scale", CLUSTER),
        *provisioned(plane, "n3"),
        ("cluster_members", CLUSTER),
        ("request_cluster_verification", CLUSTER),
        ("cluster_report", CLUSTER),
        ("finish_cluster_operation", ClusterEnd(CLUSTER)),
    ])  # fmt: skip


async def test_scale_down_drains_then_releases_the_removed_members(plane: Plane) -> None:
    plane.doubles.cluster_plan = ClusterPlan(CLUSTER, IMAGE, NET, True, True, [], ["n1", "n2"])
    plane.doubles.member_views = members(("n1", "active"), ("n2", "removing"))
    plane.doubles.returns("choose_cluster_removals", ["n2"])
    plane.phone_home_facts = FACTS
    handle = await plane.start(
        SCALE_CLUSTER, ClusterInput(CLUSTER, remove=1), id=WID, task_queue=TASK_QUEUE_CLUSTER
    )
    await plane.doubles.called("cluster_report")
    await settled(handle, completed=5)
    # Not yet: host-n2 is still in the head node's report.
    await plane.report(
        WID,
        {
            **converged(["host-n1"]),
            "nodes": [{"name": "host-n1", "state": "idle"}, {"name": "host-n2", "state": "idle"}],
        },
    )
    await plane.report(WID, converged(["host-n1"]))
    assert await handle.result() == "ready"
    calls = plane.doubles.calls
    removals = calls[1][1]
    assert isinstance(removals, Removals) and (removals.cluster_id, removals.count) == (CLUSTER, 1)
    assert calls == [
        ("begin_cluster_scale", CLUSTER),
        ("choose_cluster_removals", removals),
        ("cluster_members", CLUSTER),
        ("request_cluster_verification", CLUSTER),
        ("cluster_report", CLUSTER),
        *released("n2"),
        ("finish_cluster_operation", ClusterEnd(CLUSTER)),
    ]


async def test_scale_whose_new_node_fails_releases_it_and_stays_ready(plane: Plane) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN)
    plane.doubles.member_views = members(("n1", "active"), ("n3", "joining"))
    handle = await scale(plane, max_replacements=0)
    reason = "scale failed: n3: preparing: BMC does not answer; no replacement left (0 used)"
    assert_failed(await failure(handle), "ScaleFailed", reason)
    assert in_order(plane.doubles.calls) == in_order([
        ("begin_cluster_scale", CLUSTER),
        *provisioned(plane, "n3", ran=3),
        *provision_compensated("n3", "preparing: BMC does not answer"),
        ("cluster_members", CLUSTER),
        *quarantined("n3", 5, "cleaning: BMC does not answer", shrink=True),
        ("finish_cluster_operation", ClusterEnd(CLUSTER, reason)),
    ])  # fmt: skip


async def test_scale_whose_begin_fails_undoes_nothing(plane: Plane) -> None:
    plane.doubles.fail("begin_cluster_scale", "cluster c1 is not ready")
    handle = await scale(plane)
    await failure(handle)
    assert plane.doubles.calls == [("begin_cluster_scale", CLUSTER)]


async def test_scale_cancelled_while_waiting_releases_the_joining_members(plane: Plane) -> None:
    plane.doubles.member_views = members(("n1", "active"), ("n3", "joining"))
    handle = await scale(plane)
    await plane.doubles.called("cluster_report")
    await settled(handle, completed=4)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    calls = plane.doubles.calls
    assert calls[-13:] == [
        ("cluster_members", CLUSTER),
        *released("n3", shrink=True),
        ("finish_cluster_operation", ClusterEnd(CLUSTER, "scale cancelled")),
    ]


async def test_scale_cancelled_during_its_compensation_finishes_it(plane: Plane) -> None:
    plane.doubles.fail("prepare_network_boot", BMC_DOWN)
    plane.doubles.member_views = members(("n1", "active"), ("n3", "joining"))
    forget = plane.doubles.hold("forget_cluster_member")
    handle = await scale(plane, max_replacements=0)
    await forget.entered.wait()
    await cancel_acted_on(handle)
    forget.release()
    reason = "scale failed: n3: preparing: BMC does not answer; no replacement left (0 used)"
    assert_failed(await failure(handle), "ScaleFailed", reason)
    assert plane.doubles.calls[-2:] == [
        ("forget_cluster_member", ClusterNode(CLUSTER, "n3", True)),
        ("finish_cluster_operation", ClusterEnd(CLUSTER, reason)),
    ]


# -- DeleteCluster ------------------------------------------------------------------------------


async def delete(plane: Plane) -> WorkflowHandle:
    plane.doubles.cluster_plan = ClusterPlan(CLUSTER, IMAGE, NET, True, True, [], ["n1"])
    return await plane.start(
        DELETE_CLUSTER, ClusterInput(CLUSTER), id=WID, task_queue=TASK_QUEUE_CLUSTER
    )


DELETE_STEPS = [
    ("begin_cluster_delete", CLUSTER),
    ("cluster_plan", CLUSTER),
    *released("n1"),
    ("begin_cluster_network_delete", NET),
    *delete_network(),
    ("finish_cluster_delete", CLUSTER),
]


async def test_delete_cluster_happy_path(plane: Plane) -> None:
    handle = await delete(plane)
    assert await handle.result() == "deleted"
    assert in_order(plane.doubles.calls) == in_order(DELETE_STEPS)


async def test_delete_cluster_keeps_a_network_it_does_not_own(plane: Plane) -> None:
    plane.doubles.returns("begin_cluster_network_delete", False)
    handle = await delete(plane)
    assert await handle.result() == "deleted"
    assert plane.doubles.calls == [*DELETE_STEPS[:14], ("finish_cluster_delete", CLUSTER)]


async def test_delete_cluster_whose_member_fails_its_clean_deletes_all_the_same(
    plane: Plane,
) -> None:
    """The member is left in maintenance (its disks may hold the tenant's data); the tenant's
    cluster is gone."""
    plane.doubles.returns("record_clean", ["/dev/nvme0n1: zeroing failed: I/O error"])
    handle = await delete(plane)
    assert await handle.result() == "deleted"
    assert in_order(plane.doubles.calls) == in_order([
        *DELETE_STEPS[:2],
        *quarantined("n1", 7, "cleaning: /dev/nvme0n1: zeroing failed: I/O error"),
        *DELETE_STEPS[13:],
    ])  # fmt: skip


DELETE_FAILURES = {
    "release": (
        ("finish_operation", lambda r: r.operation == "release"),
        DB_DOWN,
        "delete failed: the inventory does not answer",
    ),
    "network": (("remove_partition", None), BMC_DOWN, "delete failed: BMC does not answer"),
}


@pytest.mark.parametrize("step", DELETE_FAILURES)
async def test_delete_cluster_failure_records_it(plane: Plane, step: str) -> None:
    (name, when), cause, reason = DELETE_FAILURES[step]
    plane.doubles.fail(name, cause, when=when)
    handle = await delete(plane)
    assert_failed(await failure(handle), "DeleteFailed", reason)
    assert plane.doubles.calls[-1] == (
        "fail_cluster", ClusterEnd(CLUSTER, reason, deleting=True)
    )  # fmt: skip


async def test_delete_cluster_cancelled_midway_still_deletes_everything(plane: Plane) -> None:
    """Once asked, a delete runs to its end: a cancel while a member is being released changes
    nothing, every node is released and the network deleted."""
    power_off = plane.doubles.hold("ensure_power", when=lambda r: r.soft)
    handle = await delete(plane)
    await power_off.entered.wait()
    await handle.cancel()
    power_off.release()
    assert await handle.result() == "deleted"
    assert in_order(plane.doubles.calls) == in_order(DELETE_STEPS)
    assert not plane.doubles.cancelled


async def test_the_network_is_deleted_once_a_workflow_holding_its_id_has_ended(
    plane: Plane,
) -> None:
    """A cancel that reaches CreateCluster while it starts CreateNetwork does not wait for that
    child, which may still be unwinding under the network's workflow id when the cluster's
    unwinding deletes the network: the delete waits for it instead of leaving the network."""
    unwinding = plane.doubles.hold("remove_partition")
    plane.doubles.fail("ensure_partition", "no free pkey")
    creation = await plane.start(
        CREATE_NETWORK, NetworkInput(NET), id=network_workflow_id(NET),
        task_queue=TASK_QUEUE_NETWORK,
    )  # fmt: skip
    await unwinding.entered.wait()
    handle = await delete(plane)
    await plane.doubles.called("begin_cluster_network_delete")
    unwinding.release()
    assert await handle.result() == "deleted"
    assert isinstance(await failure(creation), ApplicationError)
    calls = plane.doubles.names()
    assert calls.count("finish_network_delete") == 1
    assert calls.index("finish_network_delete") < calls.index("finish_cluster_delete")
