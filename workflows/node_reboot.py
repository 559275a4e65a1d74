"""RebootNode: an operator reboots an active node: power off (the ACPI power button first,
unless hard) and on again. A node whose image is stateless network boots it again: the workflow
waits for that boot's phone-home and verifies its facts as at activation.

Phases: rebooting -> active, or failed (the node left as it is, powered or not: nothing is
undone). The node keeps its boot session on failure, so an SRE resets the workflow once the
cause is fixed. A reboot cancelled before the power-off leaves the node active: nothing was done
(and a reset could not undo that cancel, which Temporal keeps ahead of the first workflow task).
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import BaremetalActivities, PowerRequest
    from activities.inventory import (
        ClaimReboot,
        FinishOperation,
        InventoryActivities,
        RebootPlan,
        VerifyNode,
    )
    from core.contracts import (
        FIRST_PHASE,
        REBOOT_NODE,
        SIGNAL_PHONE_HOME,
        OperationResult,
        PhoneHomeSignal,
        RebootNodeInput,
    )
    from inventory.states import NodeState
    from workflows.failures import failure_reason
    from workflows.node import NodeOperation, OperationFailed
    from workflows.operation import operation
    from workflows.steps import bmc, inventory


@workflow.defn(name=REBOOT_NODE)
class RebootNode(NodeOperation):
    initial_phase = FIRST_PHASE[REBOOT_NODE]

    def __init__(self) -> None:
        super().__init__()
        self._boots_before: int | None = None  # the session's boots once the node was off
        self._phone_homes: list[PhoneHomeSignal] = []
        self._plan: RebootPlan | None = None
        self._powered_off = False  # the power-off was asked for: the node may be touched

    @workflow.signal(name=SIGNAL_PHONE_HOME)
    def phone_home(self, signal: PhoneHomeSignal) -> None:
        self._phone_homes.append(signal)

    def _this_boot(self) -> dict | None:
        """The facts of the first phone-home of a boot begun after the power-off: this reboot's
        (one that began before it is not)."""
        if self._boots_before is None or self._plan is None:
            return None
        return next(
            (
                signal.facts
                for signal in self._phone_homes
                if signal.boot_session_id == self._plan.boot_session_id
                and signal.boot > self._boots_before
            ),
            None,
        )

    @workflow.run
    async def run(self, request: RebootNodeInput) -> OperationResult:
        """Claim, power cycle, await the boot, verify."""
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        await operation(
            self._reboot(request, workflow_id),
            lambda reason, cancelled: self._compensate(node_id, workflow_id, reason, cancelled),
            failure_type="RebootFailed",
            reason=lambda error: f"{self._phase}: {failure_reason(error)}",
            cancel_was="any",
        )
        self._enter("active")
        return OperationResult(node_id=node_id, state="active")

    async def _reboot(self, request: RebootNodeInput, workflow_id: str) -> None:
        node_id = request.node_id
        self._step("claiming the node")
        plan = await self._claim(node_id, workflow_id)
        await self._power_cycle(request, plan)
        if plan.stateless:
            await self._verify_the_boot(node_id, workflow_id, plan, request)
        else:
            self._step("marking the node active")
            await inventory(
                InventoryActivities.finish_operation,
                FinishOperation(node_id, workflow_id, "reboot", "active"),
            )

    async def _power_cycle(self, request: RebootNodeInput, plan: RebootPlan) -> None:
        node_id = request.node_id
        how = "hard" if request.hard else "soft (hard after a grace period)"
        self._step(f"power off, {how}")
        self._powered_off = True
        await bmc(
            BaremetalActivities.ensure_power, PowerRequest(node_id, "off", soft=not request.hard)
        )
        if plan.stateless:
            assert plan.boot_session_id is not None
            # Read once the node is off: only a later boot's phone-home is this reboot's.
            self._boots_before = await inventory(
                InventoryActivities.boots_so_far, plan.boot_session_id
            )
        self._step("power on")
        await bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))

    async def _compensate(
        self, node_id: str, workflow_id: str, reason: str, cancelled: bool
    ) -> str:
        """Nothing is undone: the node is left as it is, `failed` with its boot session kept
        for an SRE's reset; but a reboot cancelled before the power-off did nothing at all."""
        if cancelled and self._untouched():
            return await self._back_to_active(node_id, workflow_id)
        return await self._mark_failed(node_id, workflow_id, "reboot", reason)

    async def _claim(self, node_id: str, workflow_id: str) -> RebootPlan:
        """Claim the node. The claim runs whole even when a cancel comes first: what to do then
        depends on the state it was claimed from (the plan is kept)."""
        claim = asyncio.ensure_future(
            inventory(InventoryActivities.claim_node_for_reboot, ClaimReboot(node_id, workflow_id))
        )
        try:
            plan = await asyncio.shield(claim)
        except asyncio.CancelledError:
            with contextlib.suppress(ActivityError):  # the cancel is what the caller sees
                self._plan = await claim
            raise
        self._plan = plan
        return plan

    def _untouched(self) -> bool:
        """Cancelled before the power-off of a reboot asked for on an active node."""
        return (
            not self._powered_off
            and self._plan is not None
            and self._plan.claimed_from == NodeState.ACTIVE.value
        )

    async def _back_to_active(self, node_id: str, workflow_id: str) -> str:
        reason = "reboot cancelled before the power-off"
        self._step(f"marking the node active again: {reason}")
        await inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "reboot", "active", reason),
        )
        self._enter("active", reason)
        return reason

    async def _verify_the_boot(
        self, node_id: str, workflow_id: str, plan: RebootPlan, request: RebootNodeInput
    ) -> None:
        assert plan.boot_session_id is not None
        timeout = request.phone_home_timeout_seconds
        self._step(f"waiting up to {timeout:g} s for the node to phone home")
        await self._phoned_home(lambda: self._this_boot() is not None, timeout)
        self._step("comparing the reported facts with the tuning profile")
        facts = self._this_boot()
        assert facts is not None
        mismatches = await inventory(
            InventoryActivities.verify_and_activate,
            VerifyNode(node_id, workflow_id, plan.boot_session_id, facts, "reboot"),
        )
        if mismatches:
            raise OperationFailed("tuning verification failed: " + "; ".join(mismatches))
