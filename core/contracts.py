"""Workflow names, task queues, signals and parameter types shared by starters and workers.

Starter (API, CLI) and worker import the same definitions so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TASK_QUEUE_BAREMETAL = "baremetal"
TASK_QUEUE_INVENTORY = "inventory"
TASK_QUEUE_NETWORK = "network"
TASK_QUEUE_CLUSTER = "cluster"

PROVISION_NODE = "ProvisionNode"
RELEASE_NODE = "ReleaseNode"
REBOOT_NODE = "RebootNode"
CHECK_NODE_BOOT = "CheckNodeBoot"
COMMISSION_NODE = "CommissionNode"
RESCUE_NODE = "RescueNode"
UNRESCUE_NODE = "UnrescueNode"

CREATE_NETWORK = "CreateNetwork"
DELETE_NETWORK = "DeleteNetwork"
ATTACH_NODE = "AttachNode"
DETACH_NODE = "DetachNode"

CREATE_CLUSTER = "CreateCluster"
DELETE_CLUSTER = "DeleteCluster"
SCALE_CLUSTER = "ScaleCluster"

SYNC_POWER_STATES = "SyncPowerStates"
POWER_SYNC_SCHEDULE_ID = "power-sync"  # the Temporal Schedule that starts SyncPowerStates

SIGNAL_PHONE_HOME = "phone_home"
SIGNAL_CLUSTER_REPORT = "cluster_report"
QUERY_PHASE = "phase"

# The Phase a node workflow starts in; the starter sets it as the initial search attribute.
FIRST_PHASE = {
    PROVISION_NODE: "preparing",
    RELEASE_NODE: "cleaning",
    REBOOT_NODE: "rebooting",
    COMMISSION_NODE: "inspecting",
    RESCUE_NODE: "rescuing",
    UNRESCUE_NODE: "rebooting",
}

# Custom search attributes the Temporal namespace must have (name -> indexed value type).
SEARCH_ATTRIBUTES: dict[str, str] = {
    "NodeId": "Keyword",
    "Phase": "Keyword",
    "Operation": "Keyword",
    "TenantId": "Keyword",
    "ImageName": "Keyword",
}


def node_workflow_id(node_id: str) -> str:
    """One workflow id per node: Temporal then runs at most one operation per node at a time."""
    return f"node/{node_id}"


def node_boot_workflow_id(node_id: str, boot_session_id: str, boot: int) -> str:
    """One workflow per reboot of an active node: each boot is checked once."""
    return f"node-boot/{node_id}/{boot_session_id}/{boot}"


def network_workflow_id(network_id: str) -> str:
    """One workflow id per network: its create and delete never overlap."""
    return f"network/{network_id}"


def node_network_workflow_id(node_id: str) -> str:
    """One workflow id per node for moving its ports: attach and detach never overlap."""
    return f"node-network/{node_id}"


def cluster_workflow_id(cluster_id: str) -> str:
    """One workflow id per cluster: its create, scale and delete never overlap."""
    return f"cluster/{cluster_id}"


@dataclass
class ClusterInput:
    cluster_id: str
    ready_timeout_seconds: float = 600.0  # nodes active until the head node reports them all
    remove: int = 0  # ScaleCluster: members to drain and release
    parallelism: int = 8  # nodes provisioned at once
    max_replacements: int = 2  # nodes that failed provisioning replaced, per operation
    phone_home_timeout_seconds: float = 900.0


@dataclass
class ClusterReportSignal:
    """The head node's report (docs/boot-contract.md), sent by the API when it changed."""

    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetworkInput:
    network_id: str


@dataclass
class AttachNodeInput:
    network_id: str
    node_id: str


@dataclass
class DetachNodeInput:
    node_id: str


@dataclass
class ProvisionNodeInput:
    node_id: str
    image: str
    phone_home_timeout_seconds: float = 900.0
    network_id: str | None = None  # the tenant network to attach the node to once active


@dataclass
class ReleaseNodeInput:
    node_id: str
    clean_timeout_seconds: float = 1800.0  # the cleaning boot phones home with its report


@dataclass
class CommissionNodeInput:
    node_id: str
    inspect_timeout_seconds: float = 1800.0  # the agent's boot, inspection and report


@dataclass
class RebootNodeInput:
    node_id: str
    hard: bool = False  # power off at once instead of the ACPI power button first
    phone_home_timeout_seconds: float = 900.0  # stateless images: until the reboot phones home


@dataclass
class RescueNodeInput:
    """RescueNode and UnrescueNode: into the rescue ramdisk, and back into the image."""

    node_id: str
    hard: bool = False  # power off at once instead of the ACPI power button first
    phone_home_timeout_seconds: float = 900.0  # until the ramdisk (or the image) phones home


@dataclass
class PhoneHomeSignal:
    """Sent by the boot service once it has accepted a node's single-use phone-home token."""

    boot_session_id: str
    facts: dict[str, Any] = field(default_factory=dict)
    boot: int = 0  # the boot's number in its session


@dataclass
class NodeBootInput:
    """A reboot of an active node (stateless image) phoned home: the boot service starts its
    check with the facts it reported."""

    node_id: str
    boot_session_id: str
    boot: int
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class OperationResult:
    node_id: str
    state: str
    detail: str = ""


@dataclass
class SyncPowerStatesInput:
    """What the power-sync schedule passes each run (set from the worker's settings)."""

    policy: str = "report"  # inventory.power.PowerPolicy
    unreachable_after: int = 3  # failed reads in a row that flag a node's BMC
    batch_size: int = 200  # nodes per activity


@dataclass
class PowerSyncSummary:
    """One sync's outcome, as operators see it in the Web UI (node ids per finding)."""

    checked: int = 0
    skipped: int = 0  # claimed by an operation meanwhile: the next sync reads them
    failed_reads: list[str] = field(default_factory=list)  # the BMC did not answer this run
    drifted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    restore_failed: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # flagged by this sync
    answering_again: list[str] = field(default_factory=list)

    def plus(self, other: PowerSyncSummary) -> PowerSyncSummary:
        return PowerSyncSummary(
            self.checked + other.checked, self.skipped + other.skipped,
            self.failed_reads + other.failed_reads, self.drifted + other.drifted,
            self.restored + other.restored, self.restore_failed + other.restore_failed,
            self.unreachable + other.unreachable, self.answering_again + other.answering_again,
        )  # fmt: skip
