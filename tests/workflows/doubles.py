"""Test doubles of every activity the workflows call, registered under the real activities'
names, and what they saw.

One `Doubles` per test. Each double records its call (registered name, argument) in `calls`,
then does what a matching rule says: fail (with the ApplicationError the real activity would
raise), block until the workflow cancels it (heartbeating, so the cancel reaches it), hold
until the test releases it, or return a given result; without a rule it returns a plausible
result. The workers register the doubles through the real workers' `build_worker` (conftest),
by the attribute names of the real activity classes, so a double is where the real activity is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import ANY

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.baremetal import BootDeviceRequest, PowerRequest, PreparedBoot, PrepareNetworkBoot
from activities.cluster import ClusterEnd, ClusterNode, ClusterPlan, MemberView, Removals
from activities.inventory import (
    AgentBootPlan,
    CheckBoot,
    ClaimCommission,
    ClaimProvision,
    ClaimReboot,
    ClaimRelease,
    ClaimRescue,
    FinishOperation,
    OpenCleaning,
    OpenDeploy,
    ProvisionPlan,
    RebootPlan,
    RecordClean,
    RecordDeploy,
    RecordInspection,
    UnrescuePlan,
    VerifyNode,
)
from activities.network import NetworkNode, NetworkOnSwitch, NetworkStateChange, NodePorts
from activities.power_sync import PowerSyncBatch
from core.contracts import PowerSyncSummary

Call = tuple[str, Any]  # (registered activity name, its argument or None)


def error(message: str, type_: str = "InventoryError", *, retryable: bool = False) -> Exception:
    """What a real activity raises: an ApplicationError, non-retryable unless said otherwise."""
    return ApplicationError(message, type=type_, non_retryable=not retryable)


@dataclass
class Rule:
    name: str
    when: Callable[[Any], bool]
    kind: str  # "fail" | "block" | "hold" | "return"
    times: int | None  # matching calls it applies to (None: all)
    error: Exception | None = None
    result: Any = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


def _always(_: Any) -> bool:
    return True


class Doubles:
    """The activities' doubles for one test (attributes named as in the real classes)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.cancelled: list[Call] = []  # attempts that saw the workflow's cancel
        self.workflow_ids: set[str] = set()  # of the workflows whose activities ran
        self._rules: list[Rule] = []
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        # Called after ensure_power("on") returned: the test's boot service (conftest).
        self.on_power_on: Callable[[PowerRequest], Awaitable[None]] | None = None
        self.leaves = ["leaf1", "leaf2"]
        self.cluster_plan = ClusterPlan("c1", "slurm-gpu", "net-c1", True, False, ["n1"], ["n1"])
        self.member_views: list[MemberView] | None = None  # None: from cluster_plan
        self.spares = ["spare1", "spare2", "spare3"]
        self.verification_generation = 1
        self.stateless = False
        self.deployed = False  # the claimed image is written to the disk (direct deploy)
        self.sync_nodes = ["n1", "n2", "n3", "n4", "n5"]  # what the power sync lists

    # -- knobs -------------------------------------------------------------------------------

    def _add(self, name: str, kind: str, when: Callable[[Any], bool] | None, times: int | None,
             **kw: Any) -> Rule:  # fmt: skip
        rule = Rule(name, when or _always, kind, times, **kw)
        self._rules.append(rule)
        return rule

    def fail(self, name: str, exc: Exception | str, *, when: Callable[[Any], bool] | None = None,
             times: int | None = None) -> Rule:  # fmt: skip
        """Matching calls raise `exc` (a string: a non-retryable ApplicationError)."""
        return self._add(
            name, "fail", when, times, error=error(exc) if isinstance(exc, str) else exc
        )

    def block(self, name: str, *, when: Callable[[Any], bool] | None = None) -> Rule:
        """The first matching call heartbeats until the workflow cancels it."""
        return self._add(name, "block", when, 1)

    def hold(self, name: str, *, when: Callable[[Any], bool] | None = None) -> Rule:
        """The first matching call waits until the test calls `rule.release()`, then goes on as
        the next matching rule says or returns its usual result. For steps the workflow shields
        from a cancel (the cancel never reaches them)."""
        return self._add(name, "hold", when, 1)

    def returns(self, name: str, result: Any, *, when: Callable[[Any], bool] | None = None,
                times: int | None = None) -> Rule:  # fmt: skip
        """Matching calls return `result` (a function: called with the argument)."""
        return self._add(name, "return", when, times, result=result)

    # -- what was seen -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, *names: str) -> list[Call]:
        return [call for call in self.calls if call[0] in names]

    async def called(self, name: str, when: Callable[[Any], bool] | None = None,
                     timeout: float = 20) -> Any:  # fmt: skip
        """The argument of the first call of `name` (matching `when`), once it was made."""
        async with asyncio.timeout(timeout):
            while True:
                for called, arg in self.calls:
                    if called == name and (when is None or when(arg)):
                        return arg
                self._changed.clear()
                await self._changed.wait()

    # -- the one place every double goes through -------------------------------------------------

    async def _act(self, name: str, arg: Any, default: Callable[[], Any]) -> Any:
        self.calls.append((name, arg))
        self.workflow_ids.add(activity.info().workflow_id or "")
        self._changed.set()
        for rule in self._rules:
            if rule.name != name or rule.times == 0 or not rule.when(arg):
                continue
            if rule.times is not None:
                rule.times -= 1
            rule.entered.set()
            if rule.kind == "fail":
                assert rule.error is not None
                raise rule.error
            if rule.kind == "block":
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    self.cancelled.append((name, arg))
                    self._changed.set()
                    raise
            if rule.kind == "hold":  # then as the next matching rule says
                await rule.released.wait()
                continue
            if rule.kind == "return":
                return rule.result(arg) if callable(rule.result) else rule.result
            break
        return default()

    # -- BaremetalActivities ---------------------------------------------------------------------

    @activity.defn(name="ensure_power")
    async def ensure_power(self, request: PowerRequest) -> bool:
        done = await self._act("ensure_power", request, lambda: True)
        if request.state == "on" and self.on_power_on is not None:
            # The node boots once powered on: its phone-home comes after this step ended.
            task = asyncio.get_running_loop().create_task(self.on_power_on(request))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return done

    @activity.defn(name="ensure_boot_device")
    async def ensure_boot_device(self, request: BootDeviceRequest) -> bool:
        return await self._act("ensure_boot_device", request, lambda: True)

    @activity.defn(name="prepare_network_boot")
    async def prepare_network_boot(self, request: PrepareNetworkBoot) -> PreparedBoot:
        return await self._act(
            "prepare_network_boot", request, lambda: PreparedBoot(True, {}, True)
        )

    @activity.defn(name="list_nodes_for_power_sync")
    async def list_nodes_for_power_sync(self) -> list[str]:
        return await self._act("list_nodes_for_power_sync", None, lambda: list(self.sync_nodes))

    @activity.defn(name="sync_power_states")
    async def sync_power_states(self, batch: PowerSyncBatch) -> PowerSyncSummary:
        return await self._act(
            "sync_power_states", batch, lambda: PowerSyncSummary(checked=len(batch.node_ids))
        )

    # -- InventoryActivities -------------------------------------------------------------------

    @activity.defn(name="read_bmc_firmware")
    async def read_bmc_firmware(self, node_id: str) -> str:
        return await self._act("read_bmc_firmware", node_id, lambda: "1.00")

    @activity.defn(name="claim_node_for_provision")
    async def claim_node_for_provision(self, request: ClaimProvision) -> ProvisionPlan:
        return await self._act(
            "claim_node_for_provision",
            request,
            lambda: ProvisionPlan(
                request.node_id,
                "supermicro",
                request.image,
                "gpu-default",
                self.stateless,
                self.deployed,
            ),
        )

    @activity.defn(name="verify_and_activate")
    async def verify_and_activate(self, request: VerifyNode) -> list[str]:
        return await self._act("verify_and_activate", request, list)

    @activity.defn(name="check_node_boot")
    async def check_node_boot(self, request: CheckBoot) -> str:
        return await self._act(
            "check_node_boot", request, lambda: f"boot {request.boot}: tuning verified"
        )

    @activity.defn(name="claim_node_for_release")
    async def claim_node_for_release(self, request: ClaimRelease) -> None:
        return await self._act("claim_node_for_release", request, lambda: None)

    @activity.defn(name="open_cleaning_boot")
    async def open_cleaning_boot(self, request: OpenCleaning) -> AgentBootPlan:
        return await self._act(
            "open_cleaning_boot",
            request,
            lambda: AgentBootPlan(request.node_id, "supermicro", "lab-sim", "gpu-default"),
        )

    @activity.defn(name="claim_node_for_commission")
    async def claim_node_for_commission(self, request: ClaimCommission) -> AgentBootPlan:
        return await self._act(
            "claim_node_for_commission",
            request,
            lambda: AgentBootPlan(request.node_id, "supermicro", "lab-sim", "gpu-default"),
        )

    @activity.defn(name="record_inspection")
    async def record_inspection(self, request: RecordInspection) -> list[str]:
        return await self._act("record_inspection", request, list)

    @activity.defn(name="record_clean")
    async def record_clean(self, request: RecordClean) -> list[str]:
        return await self._act("record_clean", request, list)

    @activity.defn(name="open_deploy_boot")
    async def open_deploy_boot(self, request: OpenDeploy) -> AgentBootPlan:
        return await self._act(
            "open_deploy_boot",
            request,
            lambda: AgentBootPlan(request.node_id, "supermicro", "lab-sim", "gpu-default"),
        )

    @activity.defn(name="record_deploy")
    async def record_deploy(self, request: RecordDeploy) -> list[str]:
        return await self._act("record_deploy", request, list)

    @activity.defn(name="open_disk_boot")
    async def open_disk_boot(self, request: OpenDeploy) -> None:
        return await self._act("open_disk_boot", request, lambda: None)

    @activity.defn(name="claim_node_for_rescue")
    async def claim_node_for_rescue(self, request: ClaimRescue) -> AgentBootPlan:
        return await self._act(
            "claim_node_for_rescue",
            request,
            lambda: AgentBootPlan(request.node_id, "supermicro", "lab-sim", "gpu-default"),
        )

    @activity.defn(name="claim_node_for_unrescue")
    async def claim_node_for_unrescue(self, request: ClaimRescue) -> UnrescuePlan:
        return await self._act(
            "claim_node_for_unrescue",
            request,
            lambda: UnrescuePlan(
                request.node_id,
                "network" if self.stateless else "disk",
                request.boot_session_id if self.stateless else None,
            ),
        )

    @activity.defn(name="claim_node_for_reboot")
    async def claim_node_for_reboot(self, request: ClaimReboot) -> RebootPlan:
        return await self._act(
            "claim_node_for_reboot",
            request,
            lambda: RebootPlan(
                request.node_id,
                self.stateless,
                "5e55a0e0-0000-4000-8000-000000000001" if self.stateless else None,
                "active",
            ),
        )

    @activity.defn(name="boots_so_far")
    async def boots_so_far(self, session_id: str) -> int:
        return await self._act("boots_so_far", session_id, lambda: 3)

    @activity.defn(name="finish_operation")
    async def finish_operation(self, request: FinishOperation) -> None:
        return await self._act("finish_operation", request, lambda: None)

    # -- NetworkActivities (registered under their method names) -------------------------------

    @activity.defn(name="list_leaves")
    async def list_leaves(self) -> list[str]:
        return await self._act("list_leaves", None, lambda: list(self.leaves))

    @activity.defn(name="ensure_network_on_switch")
    async def ensure_network_on_switch(self, request: NetworkOnSwitch) -> None:
        return await self._act("ensure_network_on_switch", request, lambda: None)

    @activity.defn(name="remove_network_from_switch")
    async def remove_network_from_switch(self, request: NetworkOnSwitch) -> None:
        return await self._act("remove_network_from_switch", request, lambda: None)

    @activity.defn(name="move_node_ports")
    async def move_node_ports(self, request: NodePorts) -> None:
        return await self._act("move_node_ports", request, lambda: None)

    @activity.defn(name="ensure_partition")
    async def ensure_partition(self, network_id: str) -> None:
        return await self._act("ensure_partition", network_id, lambda: None)

    @activity.defn(name="remove_partition")
    async def remove_partition(self, network_id: str) -> None:
        return await self._act("remove_partition", network_id, lambda: None)

    @activity.defn(name="add_node_to_partition")
    async def add_node_to_partition(self, request: NetworkNode) -> None:
        return await self._act("add_node_to_partition", request, lambda: None)

    @activity.defn(name="remove_node_from_partition")
    async def remove_node_from_partition(self, request: NetworkNode) -> None:
        return await self._act("remove_node_from_partition", request, lambda: None)

    @activity.defn(name="set_network_state")
    async def set_network_state(self, request: NetworkStateChange) -> None:
        return await self._act("set_network_state", request, lambda: None)

    @activity.defn(name="finish_network_delete")
    async def finish_network_delete(self, network_id: str) -> None:
        return await self._act("finish_network_delete", network_id, lambda: None)

    @activity.defn(name="record_attachment")
    async def record_attachment(self, request: NetworkNode) -> bool:
        return await self._act("record_attachment", request, lambda: True)

    @activity.defn(name="mark_attached")
    async def mark_attached(self, request: NetworkNode) -> None:
        return await self._act("mark_attached", request, lambda: None)

    @activity.defn(name="leave_tenant_network")
    async def leave_tenant_network(self, node_id: str) -> None:
        return await self._act("leave_tenant_network", node_id, lambda: None)

    @activity.defn(name="leave_network")
    async def leave_network(self, request: NetworkNode) -> None:
        return await self._act("leave_network", request, lambda: None)

    # -- ClusterActivities -----------------------------------------------------------------------

    def _members(self) -> list[MemberView]:
        if self.member_views is not None:
            return list(self.member_views)
        plan = self.cluster_plan
        return [
            MemberView(n, f"host-{n}", "compute", "joining" if n in plan.joining else "active")
            for n in plan.members
        ]

    @activity.defn(name="begin_cluster_create")
    async def begin_create(self, cluster_id: str) -> ClusterPlan:
        return await self._act("begin_cluster_create", cluster_id, lambda: self.cluster_plan)

    @activity.defn(name="cluster_plan")
    async def plan(self, cluster_id: str) -> ClusterPlan:
        return await self._act("cluster_plan", cluster_id, lambda: self.cluster_plan)

    @activity.defn(name="cluster_members")
    async def members(self, cluster_id: str) -> list[MemberView]:
        return await self._act("cluster_members", cluster_id, self._members)

    @activity.defn(name="begin_cluster_scale")
    async def begin_scale(self, cluster_id: str) -> ClusterPlan:
        return await self._act("begin_cluster_scale", cluster_id, lambda: self.cluster_plan)

    @activity.defn(name="begin_cluster_delete")
    async def begin_delete(self, cluster_id: str) -> ClusterPlan:
        return await self._act("begin_cluster_delete", cluster_id, lambda: self.cluster_plan)

    @activity.defn(name="replace_cluster_member")
    async def replace_member(self, request: ClusterNode) -> str:
        return await self._act("replace_cluster_member", request, lambda: self.spares.pop(0))

    @activity.defn(name="request_cluster_verification")
    async def request_verification(self, cluster_id: str) -> int:
        return await self._act(
            "request_cluster_verification", cluster_id, lambda: self.verification_generation
        )

    @activity.defn(name="cluster_report")
    async def report(self, cluster_id: str) -> dict[str, Any] | None:
        return await self._act("cluster_report", cluster_id, lambda: None)

    @activity.defn(name="choose_cluster_removals")
    async def choose_removals(self, request: Removals) -> list[str]:
        return await self._act("choose_cluster_removals", request, list)

    @activity.defn(name="forget_cluster_member")
    async def forget_member(self, request: ClusterNode) -> None:
        return await self._act("forget_cluster_member", request, lambda: None)

    @activity.defn(name="finish_cluster_operation")
    async def finish(self, request: ClusterEnd) -> None:
        return await self._act("finish_cluster_operation", request, lambda: None)

    @activity.defn(name="fail_cluster")
    async def fail_cluster(self, request: ClusterEnd) -> bool:
        return await self._act("fail_cluster", request, lambda: True)

    @activity.defn(name="begin_cluster_network_delete")
    async def begin_network_delete(self, network_id: str) -> bool:
        return await self._act("begin_cluster_network_delete", network_id, lambda: True)

    @activity.defn(name="finish_cluster_delete")
    async def finish_delete(self, cluster_id: str) -> bool:
        return await self._act("finish_cluster_delete", cluster_id, lambda: True)


# What a cleaning boot's agent reports (core.facts.NodeFacts with its clean report).
CLEAN_FACTS: dict[str, Any] = {
    "kernel_cmdline": "console=ttyS0",
    "clean": {"disks": [{"device": "/dev/nvme0n1", "size_bytes": 2**40,
                         "method": "nvme-format", "verified": True}]},
}  # fmt: skip


# What a deploy boot's agent reports (core.facts.NodeFacts with its deploy report).
DEPLOY_FACTS: dict[str, Any] = {
    "kernel_cmdline": "console=ttyS0",
    "deploy": {"device": "/dev/nvme0n1", "image_url": "http://boot/artifacts/img/root.img",
               "sha256": "ab" * 32, "bootloader": "extlinux 6.04", "error": None},
}  # fmt: skip


# What an inspection boot's agent reports (core.facts.NodeFacts with its hardware record).
HARDWARE_FACTS: dict[str, Any] = {
    "kernel_cmdline": "console=ttyS0",
    "hardware": {"cpus": 224, "memory_bytes": 2**41, "gpus": [], "disks": [], "nics": []},
}


def release_steps(node: str, workflow_id: str) -> list[Call]:
    """ReleaseNode's calls when all goes well: its cleaning boot's session id is the
    workflow's own (mock.ANY here)."""
    return [
        ("claim_node_for_release", ClaimRelease(node, workflow_id)),
        ("leave_tenant_network", node),
        ("ensure_power", PowerRequest(node, "off", soft=True)),
        ("open_cleaning_boot", OpenCleaning(node, workflow_id, ANY)),
        ("prepare_network_boot", PrepareNetworkBoot(node, "supermicro", "gpu-default")),
        ("ensure_power", PowerRequest(node, "on")),
        ("record_clean", RecordClean(node, workflow_id, ANY, CLEAN_FACTS)),
        ("ensure_power", PowerRequest(node, "off")),
        ("ensure_boot_device", BootDeviceRequest(node, "none")),
        ("finish_operation", FinishOperation(node, workflow_id, "release", "available",
                                             cleaned=True)),
    ]  # fmt: skip


def in_order(calls: list[Call]) -> list[Call]:
    """Calls made at once (the same activity on every leaf) in a stable order."""
    out: list[Call] = []
    for call in calls:
        run = [out.pop()] if out and out[-1][0] == call[0] else []
        while out and out[-1][0] == call[0]:
            run.insert(0, out.pop())
        out += sorted([*run, call], key=repr)
    return out


class Registered:
    """What `build_worker` reads activities from: the doubles under the attribute names of one
    real activity class (ClusterActivities.fail is `fail`, a knob of Doubles)."""

    def __init__(self, doubles: Doubles, renames: dict[str, str] | None = None) -> None:
        self._doubles = doubles
        self._renames = renames or {}

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._doubles, self._renames.get(attribute, attribute))
