"""Node lifecycle workflows: ProvisionNode and ReleaseNode.

Deterministic orchestration only: every side effect is an activity. One workflow id per node
(core.contracts.node_workflow_id) makes Temporal run at most one operation per node.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.baremetal import (
        BaremetalActivities,
        BiosRequest,
        BootDeviceRequest,
        PowerRequest,
    )
    from activities.inventory import (
        ClaimProvision,
        ClaimRelease,
        FinishOperation,
        InventoryActivities,
        OpenBootSession,
        VerifyNode,
    )
    from core.contracts import (
        PROVISION_NODE,
        QUERY_PHASE,
        RELEASE_NODE,
        SIGNAL_PHONE_HOME,
        TASK_QUEUE_INVENTORY,
        OperationResult,
        PhoneHomeSignal,
        ProvisionNodeInput,
        ReleaseNodeInput,
    )

PHASE = SearchAttributeKey.for_keyword("Phase")

BMC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)
INVENTORY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)


class OperationFailed(Exception):
    """A step failed for a reason worth telling the operator verbatim."""


def _reason(error: BaseException) -> str:
    if isinstance(error, ActivityError) and error.cause is not None:
        return _reason(error.cause)
    if isinstance(error, ApplicationError):
        return error.message
    return str(error) or type(error).__name__


class _NodeOperation:
    """Phase tracking and activity helpers shared by the node workflows."""

    def __init__(self) -> None:
        self._phase = "pending"

    @workflow.query(name=QUERY_PHASE)
    def phase(self) -> str:
        return self._phase

    def _enter(self, phase: str) -> None:
        self._phase = phase
        workflow.upsert_search_attributes([PHASE.value_set(phase)])

    async def _bmc(self, activity, request, *, timeout: float = 120) -> object:  # type: ignore[no-untyped-def]
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=timedelta(seconds=timeout),
            retry_policy=BMC_RETRY,
        )

    async def _inventory(self, activity, request) -> object:  # type: ignore[no-untyped-def]
        return await workflow.execute_activity_method(
            activity,
            request,
            task_queue=TASK_QUEUE_INVENTORY,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=INVENTORY_RETRY,
        )


@workflow.defn(name=PROVISION_NODE)
class ProvisionNode(_NodeOperation):
    def __init__(self) -> None:
        super().__init__()
        self._boot_session_id: str | None = None
        self._facts: dict | None = None

    @workflow.signal(name=SIGNAL_PHONE_HOME)
    def phone_home(self, signal: PhoneHomeSignal) -> None:
        # Only the phone-home of the current boot counts; a stale one is ignored.
        if signal.boot_session_id == self._boot_session_id and self._facts is None:
            self._facts = signal.facts

    @workflow.run
    async def run(self, request: ProvisionNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._enter("claiming")
        plan = await self._inventory(
            InventoryActivities.claim_node_for_provision,
            ClaimProvision(node_id=node_id, workflow_id=workflow_id, image=request.image),
        )
        try:
            self._enter("powering-off")
            await self._bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))

            self._enter("configuring-bios")
            await self._bmc(
                BaremetalActivities.ensure_bios,
                BiosRequest(node_id, plan.vendor, plan.tuning_profile),
            )

            self._enter("preparing-boot")
            self._boot_session_id = str(workflow.uuid4())
            self._facts = None
            await self._inventory(
                InventoryActivities.open_boot_session,
                OpenBootSession(node_id, workflow_id, self._boot_session_id, request.image),
            )
            await self._bmc(
                BaremetalActivities.ensure_boot_device,
                BootDeviceRequest(node_id, "network", persistent=False),
            )

            self._enter("powering-on")
            await self._bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "on"))

            self._enter("waiting-for-phone-home")
            try:
                await workflow.wait_condition(
                    lambda: self._facts is not None,
                    timeout=timedelta(seconds=request.phone_home_timeout_seconds),
                )
            except TimeoutError as exc:
                raise OperationFailed(
                    f"node did not phone home within {request.phone_home_timeout_seconds:g} s"
                    " of power-on (check its boot configuration and console)"
                ) from exc

            self._enter("verifying")
            assert self._facts is not None
            mismatches = await self._inventory(
                InventoryActivities.verify_node,
                VerifyNode(node_id, self._boot_session_id, self._facts),
            )
            if mismatches:
                raise OperationFailed("tuning verification failed: " + "; ".join(mismatches))

            self._enter("finalizing")
            await self._bmc(
                BaremetalActivities.ensure_boot_device,
                BootDeviceRequest(node_id, "disk", persistent=True),
            )
            await self._inventory(
                InventoryActivities.finish_operation,
                FinishOperation(node_id, workflow_id, "provision", "active"),
            )
        except (ActivityError, OperationFailed, asyncio.CancelledError) as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            reason = "cancelled" if cancelled else f"{self._phase}: {_reason(error)}"
            await self._compensate(node_id, workflow_id, reason)
            if cancelled:
                raise
            raise ApplicationError(reason, type="ProvisionFailed", non_retryable=True) from error
        self._enter("active")
        return OperationResult(node_id=node_id, state="active")

    async def _compensate(self, node_id: str, workflow_id: str, reason: str) -> None:
        """Leave the node powered off, with no boot override, `failed` with the reason."""
        self._enter("compensating")
        await self._bmc(BaremetalActivities.ensure_power, PowerRequest(node_id, "off"))
        await self._bmc(BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none"))
        await self._inventory(
            InventoryActivities.finish_operation,
            FinishOperation(node_id, workflow_id, "provision", "failed", reason),
        )
        self._enter("failed")


@workflow.defn(name=RELEASE_NODE)
class ReleaseNode(_NodeOperation):
    @workflow.run
    async def run(self, request: ReleaseNodeInput) -> OperationResult:
        workflow_id = workflow.info().workflow_id
        node_id = request.node_id
        self._enter("claiming")
        await self._inventory(
            InventoryActivities.claim_node_for_release, ClaimRelease(node_id, workflow_id)
        )
        try:
            self._enter("powering-off")
            await self._bmc(
                BaremetalActivities.ensure_power, PowerRequest(node_id, "off", soft=True)
            )
            self._enter("clearing-boot-config")
            await self._bmc(
                BaremetalActivities.ensure_boot_device, BootDeviceRequest(node_id, "none")
            )
            self._enter("clearing-tenant-state")
            await self._inventory(
                InventoryActivities.finish_operation,
                FinishOperation(node_id, workflow_id, "release", "available"),
            )
        except ActivityError as error:
            reason = f"{self._phase}: {_reason(error)}"
            await self._inventory(
                InventoryActivities.finish_operation,
                FinishOperation(node_id, workflow_id, "release", "failed", reason),
            )
            self._enter("failed")
            raise ApplicationError(reason, type="ReleaseFailed", non_retryable=True) from error
        self._enter("available")
        return OperationResult(node_id=node_id, state="available")
