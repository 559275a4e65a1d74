"""RescueNode and UnrescueNode (Ironic's rescue): the tenant of an active node boots it into
the agent's ramdisk with its own SSH keys, its disks untouched, to repair what stops its image
from booting; unrescue boots it back into its image (docs/rescue.md).

Both fail like a reboot: the node `failed` with the reason, powered as it was left, for an
SRE's reset once the cause is fixed (nothing of the tenant's is undone or wiped).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import BaremetalActivities, BootDeviceRequest, PowerRequest
    from activities.inventory import (
        AgentBootPlan,
        ClaimRescue,
        FinishOperation,
        InventoryActivities,
        UnrescuePlan,
        VerifyNode,
    )
    from core.contracts import (
        FIRST_PHASE,
        RESCUE_NODE,
        SIGNAL_PHONE_HOME,
        UNRESCUE_NODE,
        OperationResult,
        PhoneHomeSignal,
        RescueNodeInput,
    )
    from workflows.failures import failure_reason
    from workflows.node import AgentTask, NodeOperation, OperationFailed
    from workflows.operation import operation
    from workflows.steps import bmc, inventory


@workflow.defn(name=RESCUE_NODE)
class RescueNode(AgentTask):
    """Phases: rescuing -> rescue, or failed."""

    initial_phase = FIRST_PHASE[RESCUE_NODE]

    @workflow.run
    async def run(self, request: RescueNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._boot_session_id = str(workflow.uuid4())
        self._step("claiming the node and opening its rescue boot")
        plan = await inventory(
            InventoryActivities.claim_node_for_rescue,
            ClaimRescue(node_id, workflow_id, self._boot_session_id),
        )
        await operation(
            self._rescue(request, plan, workflow_id),
            lambda reason, _: self._mark_failed(node_id, workflow_id, "rescue", reason),
            failure_type="RescueFailed",
            reason=lambda error: f"{self._phase}: {failure_reason(error)}",
        )
        self._enter("rescue")
        return OperationResult(node_id=node_id, state="rescue")

    async def _rescue(
        self, request: RescueNodeInput, plan: AgentBootPlan, workflow_id: str
    ) -> None:
        node_id = request.node_id
        how = "hard" if request.hard else "soft (hard after a grace period)"
        self._step(f"power off, {how}")
        await bmc(
            BaremetalActivities.ensure_power, PowerRequest(node_id, "off", soft=not request.hard)
        )
        await self._agent_report(node_id, plan, request.phone_home_timeout_seconds)
        self._step("in rescue")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "rescue", "rescue"),
        )


@workflow.defn(name=UNRESCUE_NODE)
class UnrescueNode(NodeOperation):
    """Phases: rebooting -> active, or failed. The image boots as after its provisioning:
    a stateless one from the network, the others from the disk; one that phones home is
    verified again."""

    initial_phase = FIRST_PHASE[UNRESCUE_NODE]

    def __init__(self) -> None:
        super().__init__()
        self._boot_session_id: str | None = None
        self._facts: dict | None = None

    @workflow.signal(name=SIGNAL_PHONE_HOME)
    def phone_home(self, signal: PhoneHomeSignal) -> None:
        if signal.boot_session_id == self._boot_session_id and self._facts is None:
            self._facts = signal.facts

    @workflow.run
    async def run(self, request: RescueNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._step("claiming the node")
        plan = await inventory(
            InventoryActivities.claim_node_for_unrescue,
            ClaimRescue(node_id, workflow_id, str(workflow.uuid4())),
        )
        self._boot_session_id = plan.boot_session_id
        await operation(
            self._unrescue(request, plan, workflow_id),
            lambda reason, _: self._mark_failed(node_id, workflow_id, "unrescue", reason),
            failure_type="UnrescueFailed",
            reason=lambda error: f"{self._phase}: {failure_reason(error)}",
        )
        self._enter("active")
        return OperationResult(node_id=node_id, state="active")

    async def _unrescue(
        self, request: RescueNodeInput, plan: UnrescuePlan, workflow_id: str
    ) -> None:
        node_id = request.node_id
        self._step("power off, hard (the ramdisk has nothing to save)")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
        self._step(f"boot device {plan.device} (persistent)")
        await bmc(
            BaremetalActivities.ensure_boot_device,
            BootDeviceRequest(node_id, plan.device, persistent=True),
        )
        self._step("power on")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))
        if plan.boot_session_id is None:
            self._step("marking the node active")
            await inventory(
                InventoryActivities.finish_operation,
                FinishOperation(node_id, workflow_id, "unrescue", "active"),
            )
            return
        timeout = request.phone_home_timeout_seconds
        self._step(f"waiting up to {timeout:g} s for the image to phone home")
        await self._phoned_home(lambda: self._facts is not None, timeout)
        self._step("comparing the reported facts with the tuning profile")
        assert self._facts is not None
        mismatches = await inventory(
            InventoryActivities.verify_and_activate,
            VerifyNode(node_id, workflow_id, plan.boot_session_id, self._facts, "unrescue"),
        )
        if mismatches:
            raise OperationFailed("tuning verification failed: " + "; ".join(mismatches))
