"""CommissionNode: the node's agent boots in inspect mode and reports its hardware, which
becomes the node's hardware record and is checked against its SKU; a node that matches is
`available`, one that does not goes to `maintenance` with the differences
(docs/commissioning.md). Started at enrollment, or by an operator to commission again."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import BaremetalActivities
    from activities.inventory import (
        AgentBootPlan,
        ClaimCommission,
        FinishOperation,
        InventoryActivities,
        RecordInspection,
    )
    from core.contracts import (
        COMMISSION_NODE,
        FIRST_PHASE,
        CommissionNodeInput,
        OperationResult,
    )
    from workflows.node import AgentTask
    from workflows.operation import OperationFailed
    from workflows.steps import bmc, inventory

# The patch of CommissionNode's command sequence that reads the BMC's firmware version for
# the hardware record and the SKU check (the agent cannot read it from the host).
BMC_FIRMWARE = "bmc-firmware"


@workflow.defn(name=COMMISSION_NODE)
class CommissionNode(AgentTask):
    """Phases: inspecting -> available, or maintenance with the reason (the node lacks what
    its SKU has, its agent did not report in time, a step failed, or it was cancelled): the
    workflow then completes with the node quarantined, for an operator."""

    initial_phase = FIRST_PHASE[COMMISSION_NODE]

    @workflow.run
    async def run(self, request: CommissionNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._boot_session_id = str(workflow.uuid4())
        self._step("claiming the node and opening its inspection boot")
        plan = await inventory(
            InventoryActivities.claim_node_for_commission,
            ClaimCommission(node_id, workflow_id, self._boot_session_id),
        )
        return await self._available_or_maintenance(
            self._commission(request, plan, workflow_id),
            node_id, workflow_id, "commission", "commissioning",
        )  # fmt: skip

    async def _commission(
        self, request: CommissionNodeInput, plan: AgentBootPlan, workflow_id: str
    ) -> None:
        node_id = request.node_id
        report = await self._agent_report(node_id, plan, request.inspect_timeout_seconds)
        bmc_firmware = None
        if workflow.patched(BMC_FIRMWARE):
            self._step("reading the BMC's firmware version")
            bmc_firmware = await bmc(BaremetalActivities.read_bmc_firmware, node_id)
        self._step("checking the hardware against the node's SKU")
        assert self._boot_session_id is not None
        differences = await inventory(
            InventoryActivities.record_inspection,
            RecordInspection(node_id, workflow_id, self._boot_session_id, report, bmc_firmware),
        )
        if differences:
            raise OperationFailed("; ".join(differences))
        await self._power_down(node_id)
        self._step("available")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "commission", "available"),
        )
