"""Starting a resource's workflow from the API: one at a time per workflow id."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from .problems import Problem


async def start_exclusive(
    client: Client, workflow: str, arg: object, *, workflow_id: str, task_queue: str
) -> WorkflowHandle:
    """Start it unless a workflow with this id runs (409); 503 when Temporal is away."""
    try:
        return await client.start_workflow(
            workflow, arg, id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )  # fmt: skip
    except WorkflowAlreadyStartedError as exc:
        raise Problem(
            409, "operation-running", "An operation is running", f"{workflow_id} is running"
        ) from exc
    except RPCError as exc:
        raise Problem(
            503, "workflow-engine-unavailable", "Try again", str(exc), headers={"Retry-After": "5"}
        ) from exc
