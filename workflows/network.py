"""Tenant network workflows on the `network` task queue: CreateNetwork, DeleteNetwork,
AttachNode and DetachNode.

A network exists on every leaf switch (its VRF and segment) and, when the platform manages an
InfiniBand subnet, as a partition. A failure unwinds what the workflow did, leaves the record
`failed` with the reason, and an SRE may retry (reset) the workflow after the cause is fixed:
every step converges, so a retry redoes only what is missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.network import (
        NetworkActivities,
        NetworkNode,
        NetworkOnSwitch,
        NetworkStateChange,
        NodePorts,
    )
    from core.contracts import (
        ATTACH_NODE,
        CREATE_NETWORK,
        DELETE_NETWORK,
        DETACH_NODE,
        AttachNodeInput,
        DetachNodeInput,
        NetworkInput,
    )
    from workflows.failures import failure_reason
    from workflows.operation import nothing_to_undo, operation
    from workflows.steps import fabric


async def _on_leaves(activity: Any, network_id: str, leaves: list[str]) -> None:
    """Run `activity` on every leaf at once; raise the first failure after all finished."""
    results = await asyncio.gather(
        *(fabric(activity, NetworkOnSwitch(network_id, leaf)) for leaf in leaves),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]


async def _unwind_network(network_id: str, leaves: list[str]) -> None:
    """Remove the network from every leaf and the IB subnet (each step converges); every
    step is tried, the first failure is raised after all of them."""
    failures: list[ActivityError] = []
    try:
        await _on_leaves(NetworkActivities.remove_network_from_switch, network_id, leaves)
    except ActivityError as error:
        failures.append(error)
    try:
        await fabric(NetworkActivities.remove_partition, network_id)
    except ActivityError as error:
        failures.append(error)
    if failures:
        raise failures[0]


@workflow.defn(name=CREATE_NETWORK)
class CreateNetwork:
    @workflow.run
    async def run(self, request: NetworkInput) -> str:
        network_id = request.network_id
        leaves = await fabric(NetworkActivities.list_leaves)
        await operation(
            self._create(network_id, leaves),
            lambda reason, _: self._unwind(network_id, leaves, reason),
            failure_type="NetworkFailed",
        )
        return "ready"

    async def _create(self, network_id: str, leaves: list[str]) -> None:
        workflow.set_current_details(f"VRF and segment on {len(leaves)} leaf switches")
        await _on_leaves(NetworkActivities.ensure_network_on_switch, network_id, leaves)
        workflow.set_current_details("InfiniBand partition")
        await fabric(NetworkActivities.ensure_partition, network_id)
        await fabric(
            NetworkActivities.set_network_state,
            NetworkStateChange(network_id, "ready", ["creating", "failed"]),
        )

    async def _unwind(self, network_id: str, leaves: list[str], reason: str) -> str:
        workflow.set_current_details(f"unwinding: {reason}")
        try:
            await _unwind_network(network_id, leaves)
        except ActivityError as unwind_error:  # the record still says what went wrong
            reason = f"{reason}; unwinding incomplete: {failure_reason(unwind_error)}"
        await fabric(
            NetworkActivities.set_network_state,
            NetworkStateChange(network_id, "failed", ["creating", "failed"], reason),
        )
        return reason


@workflow.defn(name=DELETE_NETWORK)
class DeleteNetwork:
    @workflow.run
    async def run(self, request: NetworkInput) -> str:
        network_id = request.network_id
        # Again `deleting` (from `failed` too): an SRE reset after a failure converges.
        await fabric(
            NetworkActivities.set_network_state,
            NetworkStateChange(network_id, "deleting", ["deleting", "failed"]),
        )
        leaves = await fabric(NetworkActivities.list_leaves)
        await operation(
            self._delete(network_id, leaves),
            lambda reason, _: self._fail(network_id, reason),
            failure_type="NetworkFailed",
            before_patch="not-compensated",
        )
        return "deleted"

    async def _delete(self, network_id: str, leaves: list[str]) -> None:
        workflow.set_current_details(f"removing from {len(leaves)} leaf switches")
        await _unwind_network(network_id, leaves)
        workflow.set_current_details("returning its values to the pools")
        await fabric(NetworkActivities.finish_network_delete, network_id)

    async def _fail(self, network_id: str, reason: str) -> str:
        await fabric(
            NetworkActivities.set_network_state,
            NetworkStateChange(network_id, "failed", ["deleting", "failed"], reason),
        )
        return reason


@workflow.defn(name=ATTACH_NODE)
class AttachNode:
    @workflow.run
    async def run(self, request: AttachNodeInput) -> str:
        target = NetworkNode(request.network_id, request.node_id)
        # False: a repeated attach; its failure must not take a working node off the network.
        created = await fabric(NetworkActivities.record_attachment, target)
        await operation(
            self._attach(target),
            lambda reason, _: self._unwind(target, created, reason),
            failure_type="AttachFailed",
        )
        return "attached"

    async def _attach(self, target: NetworkNode) -> None:
        workflow.set_current_details("switch ports into the tenant network")
        await fabric(
            NetworkActivities.move_node_ports, NodePorts(target.node_id, target.network_id)
        )
        workflow.set_current_details("InfiniBand ports into the tenant partition")
        await fabric(NetworkActivities.add_node_to_partition, target)
        # Fails when a release or detach took the node out meanwhile: then undo ours too.
        await fabric(NetworkActivities.mark_attached, target)

    async def _unwind(self, target: NetworkNode, created: bool, reason: str) -> str:
        if created:  # else a repeated attach: its failure must not take a working node off
            workflow.set_current_details("unwinding: back to the provisioning network")
            await fabric(NetworkActivities.leave_network, target)
        return reason


@workflow.defn(name=DETACH_NODE)
class DetachNode:
    """Back to the provisioning network; a node on no tenant network changes nothing."""

    @workflow.run
    async def run(self, request: DetachNodeInput) -> str:
        await operation(
            self._detach(request.node_id),
            nothing_to_undo,
            failure_type="DetachFailed",
            before_patch="not-compensated",
        )
        return "detached"

    async def _detach(self, node_id: str) -> None:
        workflow.set_current_details("ports back to the provisioning network")
        await fabric(NetworkActivities.leave_tenant_network, node_id)
