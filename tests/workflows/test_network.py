"""CreateNetwork, DeleteNetwork, AttachNode and DetachNode: each step's failure and cancel."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from activities.network import NetworkNode, NetworkOnSwitch, NetworkStateChange, NodePorts
from core.contracts import (
    ATTACH_NODE,
    CREATE_NETWORK,
    DELETE_NETWORK,
    DETACH_NODE,
    TASK_QUEUE_NETWORK,
    AttachNodeInput,
    DetachNodeInput,
    NetworkInput,
    network_workflow_id,
    node_network_workflow_id,
)

from .conftest import Plane, cancel_acted_on, failure, settled
from .doubles import Call, error, in_order

pytestmark = pytest.mark.timeout(30)

NET = "net-a"
NODE = "n1"
LEAVES = ["leaf1", "leaf2"]
CHANGEABLE = ["creating", "failed"]


def on_leaves(name: str) -> list[Call]:
    return [(name, NetworkOnSwitch(NET, leaf)) for leaf in LEAVES]


CREATE_STEPS: list[Call] = [
    ("list_leaves", None),
    *on_leaves("ensure_network_on_switch"),
    ("ensure_partition", NET),
    ("set_network_state", NetworkStateChange(NET, "ready", CHANGEABLE)),
]


def unwinding(reason: str) -> list[Call]:
    return [
        *on_leaves("remove_network_from_switch"),
        ("remove_partition", NET),
        ("set_network_state", NetworkStateChange(NET, "failed", CHANGEABLE, reason)),
    ]


def assert_failed(cause: BaseException, type_: str, message: str) -> None:
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.message, cause.non_retryable) == (type_, message, True)


async def start(plane: Plane, workflow: str, arg: object, wid: str) -> WorkflowHandle:
    return await plane.start(workflow, arg, id=wid, task_queue=TASK_QUEUE_NETWORK)


async def create(plane: Plane) -> WorkflowHandle:
    return await start(plane, CREATE_NETWORK, NetworkInput(NET), network_workflow_id(NET))


# -- CreateNetwork ------------------------------------------------------------------------------


async def test_create_network_happy_path(plane: Plane) -> None:
    handle = await create(plane)
    assert await handle.result() == "ready"
    assert in_order(plane.doubles.calls) == CREATE_STEPS


async def test_create_network_whose_leaf_list_fails_unwinds_nothing(plane: Plane) -> None:
    plane.doubles.fail("list_leaves", error("inventory down"))
    handle = await create(plane)
    assert isinstance(await failure(handle), ActivityError)
    assert plane.doubles.calls == CREATE_STEPS[:1]


CREATE_FAILURES = {
    "one_leaf": (
        lambda d: d.fail(
            "ensure_network_on_switch", error("switch leaf2: VNI in use", "InvalidChange"),
            when=lambda r: r.switch_id == "leaf2",
        ),
        3, "switch leaf2: VNI in use",
    ),
    "partition": (lambda d: d.fail("ensure_partition", "no free pkey"), 4, "no free pkey"),
    "set_ready": (
        lambda d: d.fail("set_network_state", "network was deleted",
                         when=lambda r: r.state == "ready"),
        5, "network was deleted",
    ),
}  # fmt: skip


@pytest.mark.parametrize("step", CREATE_FAILURES)
async def test_create_network_step_failure_unwinds(plane: Plane, step: str) -> None:
    knob, ran, reason = CREATE_FAILURES[step]
    knob(plane.doubles)
    handle = await create(plane)
    assert_failed(await failure(handle), "NetworkFailed", reason)
    assert in_order(plane.doubles.calls) == CREATE_STEPS[:ran] + unwinding(reason)


async def test_create_network_retries_a_retryable_switch_failure(plane: Plane) -> None:
    plane.doubles.fail(
        "ensure_partition", error("SM busy", "PartitionError", retryable=True), times=3
    )
    handle = await create(plane)
    assert await handle.result() == "ready"
    partition = ("ensure_partition", NET)
    assert in_order(plane.doubles.calls) == [
        *CREATE_STEPS[:3],
        partition,
        partition,
        partition,
        *CREATE_STEPS[3:],
    ]


async def test_create_network_unwinding_tries_every_step_and_says_what_it_left(
    plane: Plane,
) -> None:
    plane.doubles.fail("ensure_partition", "no free pkey")
    plane.doubles.fail(
        "remove_network_from_switch", "switch leaf1: unreachable",
        when=lambda r: r.switch_id == "leaf1",
    )  # fmt: skip
    plane.doubles.fail("remove_partition", "SM down")
    handle = await create(plane)
    reason = "no free pkey; unwinding incomplete: switch leaf1: unreachable"
    assert_failed(await failure(handle), "NetworkFailed", reason)
    assert in_order(plane.doubles.calls) == CREATE_STEPS[:4] + unwinding(reason)


CREATE_CANCELS = {
    "one_leaf": (("ensure_network_on_switch", lambda r: r.switch_id == "leaf1"), 3),
    "partition": (("ensure_partition", None), 4),
    "set_ready": (("set_network_state", lambda r: r.state == "ready"), 5),
}


@pytest.mark.parametrize("where", CREATE_CANCELS)
async def test_create_network_cancelled_at_a_step_unwinds(plane: Plane, where: str) -> None:
    (name, when), ran = CREATE_CANCELS[where]
    rule = plane.doubles.block(name, when=when)
    handle = await create(plane)
    await rule.entered.wait()
    if where == "one_leaf":
        # leaf2's step ended and the workflow saw it (the test server cannot cancel an activity
        # whose completion it is recording at that moment: ACTIVITY_UNKNOWN).
        await settled(handle, completed=2)
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert in_order(plane.doubles.calls) == CREATE_STEPS[:ran] + unwinding("cancelled")
    assert len(plane.doubles.cancelled) == 1 and plane.doubles.cancelled[0][0] == name


async def test_create_network_cancelled_while_listing_leaves_unwinds_nothing(
    plane: Plane,
) -> None:
    rule = plane.doubles.block("list_leaves")
    handle = await create(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == CREATE_STEPS[:1]


async def test_create_network_cancelled_during_its_unwinding_still_unwinds(
    plane: Plane,
) -> None:
    plane.doubles.fail("ensure_partition", "no free pkey")
    removal = plane.doubles.hold(
        "remove_network_from_switch", when=lambda r: r.switch_id == "leaf1"
    )
    handle = await create(plane)
    await removal.entered.wait()
    await cancel_acted_on(handle)
    removal.release()
    await failure(handle)
    assert in_order(plane.doubles.calls) == CREATE_STEPS[:4] + unwinding("no free pkey")


# -- DeleteNetwork ------------------------------------------------------------------------------

DELETING = ["deleting", "failed"]
DELETE_STEPS: list[Call] = [
    ("set_network_state", NetworkStateChange(NET, "deleting", DELETING)),
    ("list_leaves", None),
    *on_leaves("remove_network_from_switch"),
    ("remove_partition", NET),
    ("finish_network_delete", NET),
]


async def delete(plane: Plane) -> WorkflowHandle:
    return await start(plane, DELETE_NETWORK, NetworkInput(NET), network_workflow_id(NET))


async def test_delete_network_happy_path(plane: Plane) -> None:
    handle = await delete(plane)
    assert await handle.result() == "deleted"
    assert in_order(plane.doubles.calls) == DELETE_STEPS


@pytest.mark.parametrize("name", ["set_network_state", "list_leaves"])
async def test_delete_network_failing_before_the_switches_records_nothing(
    plane: Plane, name: str
) -> None:
    plane.doubles.fail(name, "it broke")
    handle = await delete(plane)
    assert isinstance(await failure(handle), ActivityError)
    ran = [n for n, _ in DELETE_STEPS].index(name) + 1
    assert plane.doubles.calls == DELETE_STEPS[:ran]


DELETE_FAILURES = {
    "one_leaf": (("remove_network_from_switch", lambda r: r.switch_id == "leaf1"), 5),
    "partition": (("remove_partition", None), 5),
    "finish": (("finish_network_delete", None), 6),
}


@pytest.mark.parametrize("step", DELETE_FAILURES)
async def test_delete_network_step_failure_records_it_failed(plane: Plane, step: str) -> None:
    (name, when), ran = DELETE_FAILURES[step]
    plane.doubles.fail(name, "it broke", when=when)
    handle = await delete(plane)
    assert_failed(await failure(handle), "NetworkFailed", "it broke")
    failed = NetworkStateChange(NET, "failed", DELETING, "it broke")
    assert in_order(plane.doubles.calls) == [*DELETE_STEPS[:ran], ("set_network_state", failed)]


async def test_delete_network_cancelled_records_it_failed(plane: Plane) -> None:
    """A cancel ends the removals in flight, then the network is recorded failed, "cancelled"
    (an SRE's reset or a new DELETE finishes it)."""
    rule = plane.doubles.block("remove_partition")
    handle = await delete(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    failed = NetworkStateChange(NET, "failed", ["deleting", "failed"], "cancelled")
    assert in_order(plane.doubles.calls) == in_order(
        [*DELETE_STEPS[:5], ("set_network_state", failed)]
    )


# -- AttachNode and DetachNode ----------------------------------------------------------------

TARGET = NetworkNode(NET, NODE)
ATTACH_STEPS: list[Call] = [
    ("record_attachment", TARGET),
    ("move_node_ports", NodePorts(NODE, NET)),
    ("add_node_to_partition", TARGET),
    ("mark_attached", TARGET),
]
LEAVE = ("leave_network", TARGET)


async def attach(plane: Plane) -> WorkflowHandle:
    return await start(
        plane, ATTACH_NODE, AttachNodeInput(NET, NODE), node_network_workflow_id(NODE)
    )


async def test_attach_happy_path(plane: Plane) -> None:
    handle = await attach(plane)
    assert await handle.result() == "attached"
    assert plane.doubles.calls == ATTACH_STEPS


async def test_attach_whose_record_fails_undoes_nothing(plane: Plane) -> None:
    plane.doubles.fail("record_attachment", "node n1 is on another network")
    handle = await attach(plane)
    assert isinstance(await failure(handle), ActivityError)
    assert plane.doubles.calls == ATTACH_STEPS[:1]


@pytest.mark.parametrize("ran", [2, 3, 4], ids=["move_ports", "partition", "mark_attached"])
@pytest.mark.parametrize("created", [True, False], ids=["new", "repeated"])
async def test_attach_step_failure_takes_a_new_attachment_back(
    plane: Plane, ran: int, created: bool
) -> None:
    plane.doubles.returns("record_attachment", created)
    plane.doubles.fail(ATTACH_STEPS[ran - 1][0], "switch leaf1: port down")
    handle = await attach(plane)
    assert_failed(await failure(handle), "AttachFailed", "switch leaf1: port down")
    assert plane.doubles.calls == ATTACH_STEPS[:ran] + ([LEAVE] if created else [])


@pytest.mark.parametrize("ran", [2, 3, 4], ids=["move_ports", "partition", "mark_attached"])
@pytest.mark.parametrize("created", [True, False], ids=["new", "repeated"])
async def test_attach_cancelled_at_a_step_takes_a_new_attachment_back(
    plane: Plane, ran: int, created: bool
) -> None:
    plane.doubles.returns("record_attachment", created)
    rule = plane.doubles.block(ATTACH_STEPS[ran - 1][0])
    handle = await attach(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.calls == ATTACH_STEPS[:ran] + ([LEAVE] if created else [])
    assert plane.doubles.cancelled == ATTACH_STEPS[ran - 1 : ran]


async def detach(plane: Plane) -> WorkflowHandle:
    return await start(plane, DETACH_NODE, DetachNodeInput(NODE), node_network_workflow_id(NODE))


async def test_detach_happy_path(plane: Plane) -> None:
    handle = await detach(plane)
    assert await handle.result() == "detached"
    assert plane.doubles.calls == [("leave_tenant_network", NODE)]


async def test_detach_failure_fails_the_workflow(plane: Plane) -> None:
    plane.doubles.fail("leave_tenant_network", "switch leaf1: unreachable")
    handle = await detach(plane)
    cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "DetachFailed"
    assert (cause.message, cause.non_retryable) == ("switch leaf1: unreachable", True)


async def test_detach_cancelled_ends_the_port_move_in_flight(plane: Plane) -> None:
    rule = plane.doubles.block("leave_tenant_network")
    handle = await detach(plane)
    await rule.entered.wait()
    await handle.cancel()
    assert isinstance(await failure(handle), CancelledError)
    assert plane.doubles.cancelled == [("leave_tenant_network", NODE)]
