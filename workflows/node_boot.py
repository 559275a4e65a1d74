"""CheckNodeBoot: a reboot of an active node phoned home (its image is stateless: it network
boots every time); its facts are verified as at activation.

Started by the boot service once it accepted the boot's token, one workflow per boot
(core.contracts.node_boot_workflow_id), so operators find each reboot and its verdict in the UI.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.inventory import CheckBoot, InventoryActivities
    from core.contracts import CHECK_NODE_BOOT, NodeBootInput
    from workflows.operation import nothing_to_undo, operation
    from workflows.steps import inventory


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
        return await operation(
            inventory(InventoryActivities.check_node_boot, check),
            nothing_to_undo,  # the check itself fails the node when its facts drift
            failure_type="BootCheckFailed",
            before_patch="not-compensated",
        )
