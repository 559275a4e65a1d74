"""Node lifecycle workflows: ProvisionNode and ReleaseNode.

Deterministic orchestration only: every side effect is an activity. One workflow id per node
(core.contracts.node_workflow_id) makes Temporal run at most one operation per node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ClassVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import (
        BaremetalActivities,
        BootDeviceRequest,
        PowerRequest,
        PrepareNetworkBoot,
    )
    from activities.inventory import (
        AgentBootPlan,
        ClaimProvision,
        ClaimRelease,
        FinishOperation,
        InventoryActivities,
        OpenCleaning,
        OpenDeploy,
        ProvisionPlan,
        RecordClean,
        RecordDeploy,
        VerifyNode,
    )
    from activities.network import NetworkActivities
    from core.contracts import (
        ATTACH_NODE,
        FIRST_PHASE,
        PROVISION_NODE,
        QUERY_PHASE,
        RELEASE_NODE,
        SIGNAL_PHONE_HOME,
        TASK_QUEUE_NETWORK,
        AttachNodeInput,
        OperationResult,
        PhoneHomeSignal,
        ProvisionNodeInput,
        ReleaseNodeInput,
        node_network_workflow_id,
    )
    from workflows.failures import failure_reason
    from workflows.operation import OperationFailed, operation
    from workflows.steps import bmc, fabric_for_node, inventory

PHASE = SearchAttributeKey.for_keyword("Phase")

# The patch of ProvisionNode's command sequence that deploys an image with a disk image
# (docs/deploy.md): the agent writes it to the disk, then the node boots from its disk.
DIRECT_DEPLOY = "direct-deploy"


class NodeOperation:
    """Phase tracking and activity helpers shared by the node workflows.

    The phase is coarse on purpose: each change is a search-attribute write (operators filter
    on it in the UI), while the current step is in the UI's current details for free.
    """

    initial_phase: ClassVar[str]

    def __init__(self) -> None:
        self._phase = self.initial_phase

    @workflow.query(name=QUERY_PHASE)
    def phase(self) -> str:
        return self._phase

    def _enter(self, phase: str, step: str | None = None) -> None:
        if phase != self._phase:
            self._phase = phase
            workflow.upsert_search_attributes([PHASE.value_set(phase)])
        self._step(step or phase)

    def _step(self, step: str) -> None:
        workflow.set_current_details(f"**{self._phase}**: {step}")

    async def _mark_failed(
        self, node_id: str, workflow_id: str, operation: str, reason: str
    ) -> str:
        """The end of every node operation's compensation: the node held by no one, `failed`
        with the reason, for an operator or an SRE's reset."""
        self._step(f"marking the node failed: {reason}")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, operation, "failed", reason),
        )
        self._enter("failed", reason)
        return reason

    async def _quarantine(self, node_id: str, workflow_id: str, operation: str, reason: str) -> str:
        """Powered off, no boot override, `maintenance` with the reason: what a failed clean
        or commissioning leaves. A BMC that fails here is said in the reason, and the node
        goes to maintenance all the same."""
        self._enter("compensating", "power off")
        try:
            await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
            self._step("clearing the boot override")
            await bmc(BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none"))
        except ActivityError as error:
            reason = f"{reason}; unwinding incomplete: {failure_reason(error)}"
        self._step(f"maintenance: {reason}")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, operation, "maintenance", reason),
        )
        self._enter("maintenance", reason)
        return reason

    async def _leave_tenant_network(self, node_id: str) -> None:
        """Switch ports to the provisioning network (a no-op for nodes with no cabling)."""
        await fabric_for_node(NetworkActivities.leave_tenant_network, node_id)

    async def _boot_agent(
        self, node_id: str, plan: AgentBootPlan, reported: Callable[[], bool], timeout: float
    ) -> None:
        """BIOS to the plan's profile, network boot its agent image once, power on, and wait
        for the agent's report (`reported`) within `timeout` seconds."""
        self._step(f"BIOS to the {plan.tuning_profile} profile, network boot {plan.image} once")
        await bmc(
            BaremetalActivities.prepare_network_boot,
            PrepareNetworkBoot(node_id, plan.vendor, plan.tuning_profile),
        )
        self._step("power on")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))
        self._step(f"waiting up to {timeout:g} s for the agent's report")
        await self._phoned_home(reported, timeout)

    async def _phoned_home(self, done: Callable[[], bool], timeout: float) -> None:
        """Wait for the node's phone-home (`done`), failing the operation after `timeout` s."""
        try:
            await workflow.wait_condition(done, timeout=timedelta(seconds=timeout))
        except TimeoutError as exc:
            raise OperationFailed(
                f"node did not phone home within {timeout:g} s of power-on"
                " (check its boot configuration and console)"
            ) from exc


class AgentTask(NodeOperation):
    """A node operation that boots the node's agent for a task (clean, inspect) and waits for
    its report: the phone-home of that boot."""

    def __init__(self) -> None:
        super().__init__()
        self._boot_session_id: str | None = None
        self._report: dict | None = None

    @workflow.signal(name=SIGNAL_PHONE_HOME)
    def phone_home(self, signal: PhoneHomeSignal) -> None:
        # The agent's report; a phone-home of another boot is ignored.
        if signal.boot_session_id == self._boot_session_id and self._report is None:
            self._report = signal.facts

    async def _agent_report(self, node_id: str, plan: AgentBootPlan, timeout: float) -> dict:
        """BIOS to the golden profile, network boot the agent once, power on, and its report
        within `timeout` seconds."""
        await self._boot_agent(node_id, plan, lambda: self._report is not None, timeout)
        assert self._report is not None
        return self._report

    async def _available_or_maintenance(
        self, steps: Awaitable[None], node_id: str, workflow_id: str, operation_name: str,
        what: str,
    ) -> OperationResult:  # fmt: skip
        """Run the steps on the operation skeleton: the node ends `available`, or on any
        failure or cancellation quarantined (`maintenance`, the reason starting with `what`).
        A quarantine completes the workflow: it is the operation's verdict on the node."""
        failure_type = f"{what.capitalize()}Failed"  # CleaningFailed, CommissioningFailed
        try:
            await operation(
                steps,
                lambda reason, _: self._quarantine(node_id, workflow_id, operation_name, reason),
                failure_type=failure_type,
                reason=lambda error: f"{what}: {failure_reason(error)}",
            )
        except ApplicationError as failed:
            if failed.type != failure_type:
                raise
            return OperationResult(node_id=node_id, state="maintenance", detail=failed.message)
        self._enter("available")
        return OperationResult(node_id=node_id, state="available")

    async def _power_down(self, node_id: str) -> None:
        self._step("power off")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
        self._step("clearing the boot override")
        await bmc(BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none"))


@workflow.defn(name=PROVISION_NODE)
class ProvisionNode(NodeOperation):
    """Phases: preparing -> booting (until the node is verified) -> active, or compensating ->
    failed. Each phase change is a search-attribute write; the steps within are details."""

    initial_phase = FIRST_PHASE[PROVISION_NODE]

    def __init__(self) -> None:
        super().__init__()
        self._boot_session_id: str | None = None
        self._facts: dict | None = None
        self._deploy_session_id: str | None = None
        self._deploy_report: dict | None = None

    @workflow.signal(name=SIGNAL_PHONE_HOME)
    def phone_home(self, signal: PhoneHomeSignal) -> None:
        # Only the phone-home of the current boot counts; a stale one is ignored.
        if signal.boot_session_id == self._boot_session_id and self._facts is None:
            self._facts = signal.facts
        elif signal.boot_session_id == self._deploy_session_id and self._deploy_report is None:
            self._deploy_report = signal.facts

    @workflow.run
    async def run(self, request: ProvisionNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._boot_session_id = str(workflow.uuid4())
        self._step("claiming the node and opening its boot session")
        plan = await inventory(
            InventoryActivities.claim_node_for_provision,
            ClaimProvision(node_id, workflow_id, request.image, self._boot_session_id),
        )
        await operation(
            self._provision(request, plan),
            lambda reason, _: self._compensate(node_id, workflow_id, reason),
            failure_type="ProvisionFailed",
            reason=lambda error: f"{self._phase}: {failure_reason(error)}",
        )
        self._enter("active")
        return OperationResult(node_id=node_id, state="active")

    async def _provision(self, request: ProvisionNodeInput, plan: ProvisionPlan) -> None:
        """Network boot the image, wait for the node's phone-home, verify it, then attach it."""
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._step("switch ports to the provisioning network")
        await self._leave_tenant_network(node_id)
        timeout = request.phone_home_timeout_seconds
        if plan.deployed and workflow.patched(DIRECT_DEPLOY):
            await self._deploy(request)
        else:
            self._step("power off, BIOS profile where it differs, network boot once")
            await bmc(
                BaremetalActivities.prepare_network_boot,
                PrepareNetworkBoot(node_id, plan.vendor, plan.tuning_profile),
            )
            self._step("power on")
            await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))
            self._enter("booting", f"waiting up to {timeout:g} s for the node to phone home")
        await self._phoned_home(lambda: self._facts is not None, timeout)

        # The boot device for good first: verification then marks the node active in one
        # step, and a failed verification is compensated (boot override cleared) like any
        # failure. A stateless image network boots every time; the others boot their disk.
        device = "network" if plan.stateless else "disk"
        self._step(f"boot device {device} (persistent)")
        await bmc(
            BaremetalActivities.ensure_boot_device,
            BootDeviceRequest(node_id, device, persistent=True),
        )
        self._step("comparing the reported facts with the tuning profile")
        assert self._facts is not None
        mismatches = await inventory(
            InventoryActivities.verify_and_activate,
            VerifyNode(node_id, workflow_id, self._boot_session_id, self._facts),
        )
        if mismatches:
            raise OperationFailed("tuning verification failed: " + "; ".join(mismatches))
        if request.network_id is not None:
            self._step(f"attaching to tenant network {request.network_id}")
            await workflow.execute_child_workflow(
                ATTACH_NODE,
                AttachNodeInput(request.network_id, node_id),
                id=node_network_workflow_id(node_id),
                task_queue=TASK_QUEUE_NETWORK,
            )

    async def _deploy(self, request: ProvisionNodeInput) -> None:
        """Ironic's direct deploy: the agent network boots, writes the image to the disk
        (checksum read back, bootloader installed) and reports; then the node boots from its
        disk, whose phone-home the caller waits for."""
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        timeout = request.phone_home_timeout_seconds
        self._enter("deploying", "opening the deploy boot")
        self._deploy_session_id = str(workflow.uuid4())
        agent = await inventory(
            InventoryActivities.open_deploy_boot,
            OpenDeploy(node_id, workflow_id, self._deploy_session_id, request.image),
        )
        # The BIOS converges to the image's profile (the agent's plan carries it).
        await self._boot_agent(node_id, agent, lambda: self._deploy_report is not None, timeout)
        assert self._deploy_report is not None
        self._step("judging the deploy report")
        problems = await inventory(
            InventoryActivities.record_deploy,
            RecordDeploy(
                node_id, workflow_id, self._deploy_session_id, request.image, self._deploy_report
            ),
        )
        if problems:
            raise OperationFailed("; ".join(problems))
        self._step("opening the disk boot")
        self._boot_session_id = str(workflow.uuid4())
        await inventory(
            InventoryActivities.open_disk_boot,
            OpenDeploy(node_id, workflow_id, self._boot_session_id, request.image),
        )
        self._step("power off, boot device disk (persistent)")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
        await bmc(
            BaremetalActivities.ensure_boot_device,
            BootDeviceRequest(node_id, "disk", persistent=True),
        )
        self._step("power on")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))
        self._enter("booting", f"waiting up to {timeout:g} s for the disk's OS to phone home")

    async def _compensate(self, node_id: str, workflow_id: str, reason: str) -> str:
        """Leave the node powered off, with no boot override, `failed` with the reason."""
        self._enter("compensating", "power off")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
        self._step("clearing the boot override")
        await bmc(BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none"))
        return await self._mark_failed(node_id, workflow_id, "provision", reason)


# The patch of ReleaseNode's command sequence that added cleaning (docs/cleaning.md): the agent
# boots, wipes every disk and reports; a failed or cancelled release leaves the node in
# `maintenance` instead of `failed` (from where it could be provisioned with the data on it).
CLEAN_ON_RELEASE = "clean-on-release"


@workflow.defn(name=RELEASE_NODE)
class ReleaseNode(AgentTask):
    """Phases: cleaning -> available. A clean that fails (a disk not wiped, no report in
    time) or is cancelled ends in maintenance: the release itself completes (the tenant no
    longer holds the node), with the node quarantined and the reason on it."""

    initial_phase = FIRST_PHASE[RELEASE_NODE]

    @workflow.run
    async def run(self, request: ReleaseNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._step("claiming the node")
        await inventory(
            InventoryActivities.claim_node_for_release, ClaimRelease(node_id, workflow_id)
        )
        if not workflow.patched(CLEAN_ON_RELEASE):  # as releases recorded before cleaning ran
            await operation(
                self._release(node_id, workflow_id),
                lambda reason, _: self._mark_failed(node_id, workflow_id, "release", reason),
                failure_type="ReleaseFailed",
                reason=lambda error: f"{self._phase}: {failure_reason(error)}",
                before_patch="not-compensated",
            )
            self._enter("available")
            return OperationResult(node_id=node_id, state="available")
        return await self._available_or_maintenance(
            self._clean(request, workflow_id), node_id, workflow_id, "release", "cleaning"
        )

    async def _release(self, node_id: str, workflow_id: str) -> None:
        self._step("switch ports back to the provisioning network")
        await self._leave_tenant_network(node_id)
        self._step("soft power off (hard after a grace period)")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off", soft=True))
        self._step("clearing the boot override")
        await bmc(BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none"))
        self._step("clearing tenant state")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "release", "available"),
        )

    async def _clean(self, request: ReleaseNodeInput, workflow_id: str) -> None:
        """Off the tenant's network and powered off; the agent network boots with the BIOS
        back on the golden profile, wipes every disk and reports; only a verified clean
        makes the node available."""
        node_id = request.node_id
        self._step("switch ports back to the provisioning network")
        await self._leave_tenant_network(node_id)
        self._step("soft power off (hard after a grace period)")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off", soft=True))
        self._step("opening the cleaning boot")
        self._boot_session_id = str(workflow.uuid4())
        plan = await inventory(
            InventoryActivities.open_cleaning_boot,
            OpenCleaning(node_id, workflow_id, self._boot_session_id),
        )
        report = await self._agent_report(node_id, plan, request.clean_timeout_seconds)
        self._step("judging the clean report")
        problems = await inventory(
            InventoryActivities.record_clean,
            RecordClean(node_id, workflow_id, self._boot_session_id, report),
        )
        if problems:
            raise OperationFailed("; ".join(problems))
        await self._power_down(node_id)
        self._step("clearing tenant state")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "release", "available", cleaned=True),
        )
