"""Tenant network workflows on the `network` task queue: CreateNetwork, DeleteNetwork,
AttachNode and DetachNode.

A network exists on every leaf switch (its VRF and segment) and, when the platform manages an
InfiniBand subnet, as a partition. A failure unwinds what the workflow did, leaves the record
`failed` with the reason, and an SRE may retry (reset) the workflow after the cause is fixed:
every step converges, so a retry redoes only what is missing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

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
    from workflows.cancellation import step
    from workflows.failures import failure_reason

SWITCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)


async def _run(activity: Any, *args: Any, timeout: float = 120) -> Any:
    """A switch or fabric step; on cancellation its attempt in flight ends first, so no switch
    change of a cancelled step lands after the unwinding."""
    return await step(
        activity,
        *args,
        start_to_close_timeout=timedelta(seconds=timeout),
        retry_policy=SWITCH_RETRY,
    )


async def _on_leaves(activity: Any, network_id: str, leaves: list[str]) -> None:
    """Run `activity` on every leaf at once; raise the first failure after all finished."""
    results = await asyncio.gather(
        *(_run(activity, NetworkOnSwitch(network_id, leaf)) for leaf in leaves),
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
        await _run(NetworkActivities.remove_partition, network_id)
    except ActivityError as error:
        failures.append(error)
    if failures:
        raise failures[0]


@workflow.defn(name=CREATE_NETWORK)
class CreateNetwork:
    @workflow.run
    async def run(self, request: NetworkInput) -> str:
        network_id = request.network_id
        leaves: list[str] = await _run(NetworkActivities.list_leaves)
        try:
            workflow.set_current_details(f"VRF and segment on {len(leaves)} leaf switches")
            await _on_leaves(NetworkActivities.ensure_network_on_switch, network_id, leaves)
            workflow.set_current_details("InfiniBand partition")
            await _run(NetworkActivities.ensure_partition, network_id)
            await _run(
                NetworkActivities.set_network_state,
                NetworkStateChange(network_id, "ready", ["creating", "failed"]),
            )
        except (ActivityError, asyncio.CancelledError) as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            reason = "cancelled" if cancelled else failure_reason(error)
            workflow.set_current_details(f"unwinding: {reason}")
            try:
                await _unwind_network(network_id, leaves)
            except ActivityError as unwind_error:  # the record still says what went wrong
                reason = f"{reason}; unwinding incomplete: {failure_reason(unwind_error)}"
            await _run(
                NetworkActivities.set_network_state,
                NetworkStateChange(network_id, "failed", ["creating", "failed"], reason),
            )
            if cancelled:
                raise
            raise ApplicationError(reason, type="NetworkFailed", non_retryable=True) from error
        return "ready"


@workflow.defn(name=DELETE_NETWORK)
class DeleteNetwork:
    @workflow.run
    async def run(self, request: NetworkInput) -> str:
        network_id = request.network_id
        # Again `deleting` (from `failed` too): an SRE reset after a failure converges.
        await _run(
            NetworkActivities.set_network_state,
            NetworkStateChange(network_id, "deleting", ["deleting", "failed"]),
        )
        leaves: list[str] = await _run(NetworkActivities.list_leaves)
        try:
            workflow.set_current_details(f"removing from {len(leaves)} leaf switches")
            await _unwind_network(network_id, leaves)
            workflow.set_current_details("returning its values to the pools")
            await _run(NetworkActivities.finish_network_delete, network_id)
        except ActivityError as error:
            reason = failure_reason(error)
            await _run(
                NetworkActivities.set_network_state,
                NetworkStateChange(network_id, "failed", ["deleting", "failed"], reason),
            )
            raise ApplicationError(reason, type="NetworkFailed", non_retryable=True) from error
        return "deleted"


@workflow.defn(name=ATTACH_NODE)
class AttachNode:
    @workflow.run
    async def run(self, request: AttachNodeInput) -> str:
        target = NetworkNode(request.network_id, request.node_id)
        # False: a repeated attach; its failure must not take a working node off the network.
        created: bool = await _run(NetworkActivities.record_attachment, target)
        try:
            workflow.set_current_details("switch ports into the tenant network")
            ports = NodePorts(request.node_id, request.network_id)
            await _run(NetworkActivities.move_node_ports, ports)
            workflow.set_current_details("InfiniBand ports into the tenant partition")
            await _run(NetworkActivities.add_node_to_partition, target)
            # Fails when a release or detach took the node out meanwhile: then undo ours too.
            await _run(NetworkActivities.mark_attached, target)
        except (ActivityError, asyncio.CancelledError) as error:
            if created:
                workflow.set_current_details("unwinding: back to the provisioning network")
                await _run(NetworkActivities.leave_network, target)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise ApplicationError(
                failure_reason(error), type="AttachFailed", non_retryable=True
            ) from error
        return "attached"


@workflow.defn(name=DETACH_NODE)
class DetachNode:
    """Back to the provisioning network; a node on no tenant network changes nothing."""

    @workflow.run
    async def run(self, request: DetachNodeInput) -> str:
        workflow.set_current_details("ports back to the provisioning network")
        await _run(NetworkActivities.leave_tenant_network, request.node_id)
        return "detached"
