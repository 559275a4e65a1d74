"""CheckNodeBoot: a reboot of an active node phoned home (its image is stateless: it network
boots every time); its facts are verified as at activation.

Started by the boot service once it accepted the boot's token, one workflow per boot
(core.contracts.node_boot_workflow_id), so operators find each reboot and its verdict in the UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.inventory import CheckBoot, InventoryActivities
    from core.contracts import CHECK_NODE_BOOT, TASK_QUEUE_INVENTORY, NodeBootInput
    from workflows.cancellation import step
    from workflows.node import INVENTORY_RETRY


@workflow.defn(name=CHECK_NODE_BOOT)
class CheckNodeBoot:
    @workflow.run
    async def run(self, request: NodeBootInput) -> str:
        workflow.set_current_details(f"checking boot {request.boot} of {request.node_id}")
        check = CheckBoot(
            request.node_id,
            workflow.info().workflow_id,
            request.boot_session_id,
            request.boot,
            request.facts,
        )
        return await step(
            InventoryActivities.check_node_boot, check, task_queue=TASK_QUEUE_INVENTORY,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=INVENTORY_RETRY,
        )  # fmt: skip
