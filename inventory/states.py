"""Lifecycle states of nodes, clusters and networks, and which changes each may make: for
nodes, the states each operation may claim one from; for clusters and networks, one table of
allowed transitions each, which their set_state checks every change against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TypeVar


class NodeState(StrEnum):
    AVAILABLE = "available"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    REBOOTING = "rebooting"
    CLEANING = "cleaning"
    INSPECTING = "inspecting"
    RESCUING = "rescuing"  # RescueNode boots the rescue ramdisk
    RESCUE = "rescue"  # its tenant is in the rescue ramdisk; the disks are as they were
    FAILED = "failed"
    MAINTENANCE = "maintenance"


# A new operation may claim a node only from these states (checked in the UPDATE's WHERE clause).
PROVISION_FROM = (NodeState.AVAILABLE, NodeState.FAILED)
# From `maintenance`: an operator cleans a node again (a failed clean leaves it there).
RELEASE_FROM = (
    NodeState.ACTIVE,
    NodeState.FAILED,
    NodeState.AVAILABLE,
    NodeState.PROVISIONING,
    NodeState.MAINTENANCE,
    NodeState.RESCUE,
)
REBOOT_FROM = (NodeState.ACTIVE,)
# Rescue: an active node boots the agent's ramdisk with its tenant's keys; unrescue boots it
# back into its image (Ironic's rescue and unrescue).
RESCUE_FROM = (NodeState.ACTIVE,)
UNRESCUE_FROM = (NodeState.RESCUE,)
# Commissioning (inspection, the SKU check, burn-in) from a free node that holds no tenant's
# data (inventory.nodes.claim_for_commission also checks that); at enrollment it starts at once.
COMMISSION_FROM = (NodeState.AVAILABLE, NodeState.FAILED, NodeState.MAINTENANCE)
# An operator takes a node out of service only when nothing holds it: no operation, tenant or
# cluster. No operation claims a node from `maintenance`, so it is never allocated.
MAINTENANCE_FROM = (NodeState.AVAILABLE, NodeState.FAILED)


class ClusterState(StrEnum):
    CREATING = "creating"
    READY = "ready"
    SCALING = "scaling"
    DELETING = "deleting"
    FAILED = "failed"


# Where a cluster may go from each state; clusters.set_state refuses any other change. The same
# state again is no change (set_state returns at once), so no state lists itself. Deletion ends
# in the record's removal, not in a state.
CLUSTER_TRANSITIONS: dict[ClusterState, frozenset[ClusterState]] = {
    # Built by its workflow, failed by its unwinding, or cancelled by DELETE.
    ClusterState.CREATING: frozenset(
        {ClusterState.READY, ClusterState.FAILED, ClusterState.DELETING}
    ),
    ClusterState.READY: frozenset({ClusterState.SCALING, ClusterState.DELETING}),
    # A scale ends `ready` even when it fails (the reason in last_error); fail_cluster takes a
    # scaling cluster too.
    ClusterState.SCALING: frozenset({ClusterState.READY, ClusterState.FAILED}),
    ClusterState.DELETING: frozenset({ClusterState.FAILED}),
    # An SRE retries the creation, or the tenant deletes it.
    ClusterState.FAILED: frozenset({ClusterState.CREATING, ClusterState.DELETING}),
}


class NetworkKind(StrEnum):
    TENANT = "tenant"
    PROVISIONING = "provisioning"


class NetworkState(StrEnum):
    CREATING = "creating"
    READY = "ready"
    DELETING = "deleting"
    FAILED = "failed"


# Where a network may go from each state; networks.set_state refuses any other change. Unlike a
# cluster's, a network's same state again is a change when its reason differs (a new last_error
# and event), so the states where callers repeat one list themselves. Deletion ends in the
# record's removal (networks.remove, from `deleting` only), not in a state.
NETWORK_TRANSITIONS: dict[NetworkState, frozenset[NetworkState]] = {
    NetworkState.CREATING: frozenset({NetworkState.READY, NetworkState.FAILED}),
    NetworkState.READY: frozenset({NetworkState.DELETING}),
    # A retried CreateNetwork or DeleteNetwork (an SRE's), or a failure said again.
    NetworkState.FAILED: frozenset(
        {NetworkState.READY, NetworkState.FAILED, NetworkState.DELETING}
    ),
    NetworkState.DELETING: frozenset({NetworkState.DELETING, NetworkState.FAILED}),
}


S = TypeVar("S", bound=StrEnum)


def may_start_from(
    transitions: Mapping[S, frozenset[S]], to_state: S, allowed_from: Sequence[str] | None = None
) -> tuple[S, ...]:
    """The states a change to `to_state` may start from: the table's, or those of them a caller
    names in `allowed_from` (an operation that must start from fewer: DeleteCluster never takes
    a cluster still `creating`, the API cancels that one). A named state the table lacks is left
    out, so a change from it is refused."""
    table = tuple(s for s in transitions if to_state in transitions[s])
    if allowed_from is None:
        return table
    return tuple(s for s in table if s in allowed_from)
