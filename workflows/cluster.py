"""Tenant cluster workflows on the `cluster` task queue: CreateCluster, ScaleCluster and
DeleteCluster (one workflow id per cluster, so they never overlap).

Nodes are provisioned by one child ProvisionNode per node (bounded parallelism), which also
attaches each to the cluster's network; a node that fails is replaced from the pool a bounded
number of times. The nodes bootstrap the cluster themselves from their user-data, as cloud-init
would; the head node then reports (SIGNAL_CLUSTER_REPORT) until every member is up and a test
job has run on all of them. Any failure or cancellation unwinds what was done: nodes released,
the cluster's own network deleted, allocations returned; an SRE may then retry (reset).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.cluster import (
        ClusterActivities,
        ClusterEnd,
        ClusterNode,
        ClusterPlan,
        Removals,
    )
    from core.cluster_report import converged, describe
    from core.contracts import (
        CREATE_CLUSTER,
        CREATE_NETWORK,
        DELETE_CLUSTER,
        DELETE_NETWORK,
        PROVISION_NODE,
        RELEASE_NODE,
        SCALE_CLUSTER,
        SIGNAL_CLUSTER_REPORT,
        TASK_QUEUE_BAREMETAL,
        TASK_QUEUE_NETWORK,
        ClusterInput,
        ClusterReportSignal,
        NetworkInput,
        ProvisionNodeInput,
        ReleaseNodeInput,
        network_workflow_id,
        node_workflow_id,
    )
    from workflows.cancellation import to_the_end
    from workflows.failures import failure_reason
    from workflows.operation import FAILURES, OPERATION_SKELETON, OperationFailed, operation
    from workflows.steps import cluster


NETWORK_BUSY_TRIES = 60  # with NETWORK_BUSY_WAIT: two minutes for a CreateNetwork to unwind
NETWORK_BUSY_WAIT = timedelta(seconds=2)


class ClusterFailed(OperationFailed):
    """A step failed for a reason worth telling the tenant verbatim."""


async def _first_failure(tasks: Sequence[Any]) -> None:
    """Await all; raise the first failure once every one has finished."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class _ClusterOperation:
    def __init__(self) -> None:
        self._report: dict[str, Any] | None = None

    @workflow.signal(name=SIGNAL_CLUSTER_REPORT)
    def cluster_report(self, signal: ClusterReportSignal) -> None:
        self._report = signal.report

    async def _provision(self, request: ClusterInput, plan: ClusterPlan) -> None:
        """Every joining member, `parallelism` at once; a node that fails is replaced (at most
        `max_replacements` times in all) by a free node that takes its role and address."""
        limit = asyncio.Semaphore(max(1, request.parallelism))
        replacements = [request.max_replacements]

        async def one(node_id: str) -> None:
            while True:
                async with limit:
                    try:
                        await workflow.execute_child_workflow(
                            PROVISION_NODE,
                            ProvisionNodeInput(
                                node_id, plan.image,
                                phone_home_timeout_seconds=request.phone_home_timeout_seconds,
                                network_id=plan.network_id,
                            ),
                            id=node_workflow_id(node_id), task_queue=TASK_QUEUE_BAREMETAL,
                        )  # fmt: skip
                        return
                    except ChildWorkflowError as error:
                        if is_cancelled_exception(error) and workflow.patched(OPERATION_SKELETON):
                            raise  # cancelled with the cluster: not a node to replace
                        failure = f"{node_id}: {failure_reason(error)}"
                if replacements[0] <= 0:
                    raise ClusterFailed(
                        f"{failure}; no replacement left ({request.max_replacements} used)"
                    )
                replacements[0] -= 1
                try:
                    failed, node_id = (
                        node_id,
                        await cluster(
                            ClusterActivities.replace_member, ClusterNode(plan.cluster_id, node_id)
                        ),
                    )
                except ActivityError as error:
                    raise ClusterFailed(
                        f"{failure}; no replacement: {failure_reason(error)}"
                    ) from error
                workflow.logger.info("%s failed provisioning; %s replaces it", failed, node_id)

        workflow.set_current_details(f"provisioning {len(plan.joining)} nodes")
        await _first_failure([one(n) for n in plan.joining])

    async def _converge(
        self, request: ClusterInput, members: Sequence[str], removed: Sequence[str]
    ) -> None:
        """Wait until the head node reports every member up and a test job on all of them run
        after this call, and none of `removed` left in the cluster."""
        generation = await cluster(ClusterActivities.request_verification, request.cluster_id)
        if self._report is None:
            self._report = await cluster(ClusterActivities.report, request.cluster_id)
        timeout = request.ready_timeout_seconds
        workflow.set_current_details(
            f"waiting up to {timeout:g} s for the head node: {len(members)} members up and a"
            " test job on all of them" + (f", {', '.join(removed)} drained" if removed else "")
        )
        try:
            await workflow.wait_condition(
                lambda: converged(self._report, members, removed, generation),
                timeout=timedelta(seconds=timeout),
            )
        except TimeoutError as exc:
            raise ClusterFailed(
                f"the cluster was not ready within {timeout:g} s: {describe(self._report)}"
            ) from exc

    async def _release(self, cluster_id: str, node_ids: Sequence[str], *, shrink: bool) -> None:
        """Release each node (ports back to provisioning, powered off, tenant state cleared),
        then take it out of the cluster."""

        async def one(node_id: str) -> None:
            await workflow.execute_child_workflow(
                RELEASE_NODE, ReleaseNodeInput(node_id), id=node_workflow_id(node_id),
                task_queue=TASK_QUEUE_BAREMETAL,
            )  # fmt: skip
            await cluster(ClusterActivities.forget_member, ClusterNode(cluster_id, node_id, shrink))

        workflow.set_current_details(f"releasing {len(node_ids)} nodes")
        await _first_failure([one(n) for n in node_ids])

    async def _unwind(self, cluster_id: str) -> None:
        """Release every member, then delete the cluster's own network."""
        plan = await cluster(ClusterActivities.plan, cluster_id)
        await self._release(cluster_id, plan.members, shrink=False)
        if plan.network_owned and plan.network_id:
            if await cluster(ClusterActivities.begin_network_delete, plan.network_id):
                workflow.set_current_details("deleting the cluster's network")
                await self._delete_network(plan.network_id)

    async def _delete_network(self, network_id: str) -> None:
        """DeleteNetwork as a child. A cancel that reached this workflow while it was starting
        CreateNetwork does not wait for that child (Temporal re-raises it at once), which may
        still be unwinding under the same workflow id: wait for it to end, then delete."""
        for attempt in range(NETWORK_BUSY_TRIES):
            try:
                await workflow.execute_child_workflow(
                    DELETE_NETWORK, NetworkInput(network_id),
                    id=network_workflow_id(network_id), task_queue=TASK_QUEUE_NETWORK,
                )  # fmt: skip
                return
            except WorkflowAlreadyStartedError:
                if attempt + 1 == NETWORK_BUSY_TRIES or not workflow.patched(OPERATION_SKELETON):
                    raise
                await workflow.sleep(NETWORK_BUSY_WAIT)

    async def _hostnames(self, cluster_id: str) -> tuple[list[str], list[str], list[str]]:
        """(hostnames that stay, hostnames being removed, node ids being removed)."""
        members = await cluster(ClusterActivities.members, cluster_id)
        keep = [m.hostname for m in members if m.state != "removing"]
        removing = [m for m in members if m.state == "removing"]
        return keep, [m.hostname for m in removing], [m.node_id for m in removing]


@workflow.defn(name=CREATE_CLUSTER)
class CreateCluster(_ClusterOperation):
    @workflow.run
    async def run(self, request: ClusterInput) -> str:
        await operation(
            self._create(request),
            lambda reason, _: self._compensate(request.cluster_id, reason),
            failure_type="ClusterFailed",
            before_patch="to-the-end",
        )
        return "ready"

    async def _create(self, request: ClusterInput) -> None:
        """The claim (begin_create) is a step: a cluster that fails it is unwound too."""
        cluster_id = request.cluster_id
        plan = await cluster(ClusterActivities.begin_create, cluster_id)
        if plan.network_owned and not plan.network_ready:
            workflow.set_current_details("creating the cluster's network")
            await workflow.execute_child_workflow(
                CREATE_NETWORK, NetworkInput(plan.network_id),
                id=network_workflow_id(plan.network_id), task_queue=TASK_QUEUE_NETWORK,
            )  # fmt: skip
        await self._provision(request, plan)
        keep, _, _ = await self._hostnames(cluster_id)
        await self._converge(request, keep, [])
        await cluster(ClusterActivities.finish, ClusterEnd(cluster_id))

    async def _compensate(self, cluster_id: str, reason: str) -> str:
        workflow.set_current_details(f"unwinding: {reason}")
        try:
            await self._unwind(cluster_id)
        except FAILURES as unwind_error:  # the record still says what went wrong
            reason = f"{reason}; unwinding incomplete: {failure_reason(unwind_error)}"
        await cluster(ClusterActivities.fail, ClusterEnd(cluster_id, reason))
        return reason


@workflow.defn(name=SCALE_CLUSTER)
class ScaleCluster(_ClusterOperation):
    """Up: the members the API admitted are provisioned and join. Down: the head node drains
    the chosen members (idle ones first) and deletes them once no job runs there; then they are
    released. A failure releases the members that were joining; the cluster stays ready."""

    @workflow.run
    async def run(self, request: ClusterInput) -> str:
        cluster_id = request.cluster_id
        started = workflow.now().isoformat()
        plan = await cluster(ClusterActivities.begin_scale, cluster_id)
        await operation(
            self._scale(request, plan, started),
            lambda reason, _: self._compensate(cluster_id, reason),
            failure_type="ScaleFailed",
            reason=lambda error: f"scale failed: {failure_reason(error)}",
            cancelled_reason="scale cancelled",
            before_patch="to-the-end",
        )
        return "ready"

    async def _scale(self, request: ClusterInput, plan: ClusterPlan, started: str) -> None:
        cluster_id = request.cluster_id
        await self._provision(request, plan)
        if request.remove:
            await cluster(
                ClusterActivities.choose_removals, Removals(cluster_id, request.remove, started)
            )
        keep, removed, removed_ids = await self._hostnames(cluster_id)
        await self._converge(request, keep, removed)
        await self._release(cluster_id, removed_ids, shrink=False)
        await cluster(ClusterActivities.finish, ClusterEnd(cluster_id))

    async def _compensate(self, cluster_id: str, reason: str) -> str:
        """The members that were joining are released; the cluster is ready as it was."""
        workflow.set_current_details(f"unwinding: {reason}")
        members = await cluster(ClusterActivities.members, cluster_id)
        joining = [m.node_id for m in members if m.state == "joining"]
        try:
            await self._release(cluster_id, joining, shrink=True)
        except FAILURES as unwind_error:
            reason = f"{reason}; unwinding incomplete: {failure_reason(unwind_error)}"
        await cluster(ClusterActivities.finish, ClusterEnd(cluster_id, reason))
        return reason


@workflow.defn(name=DELETE_CLUSTER)
class DeleteCluster(_ClusterOperation):
    @workflow.run
    async def run(self, request: ClusterInput) -> str:
        cluster_id = request.cluster_id
        await cluster(ClusterActivities.begin_delete, cluster_id)
        deleting = self._delete(cluster_id)
        if workflow.patched(OPERATION_SKELETON):  # once asked, a delete finishes
            deleting = to_the_end(deleting)
        await operation(
            deleting,
            lambda reason, _: self._fail(cluster_id, reason),
            failure_type="DeleteFailed",
            reason=lambda error: f"delete failed: {failure_reason(error)}",
            cancelled_reason="delete cancelled",
            before_patch="not-compensated",
        )
        return "deleted"

    async def _delete(self, cluster_id: str) -> None:
        await self._unwind(cluster_id)
        await cluster(ClusterActivities.finish_delete, cluster_id)

    async def _fail(self, cluster_id: str, reason: str) -> str:
        await cluster(ClusterActivities.fail, ClusterEnd(cluster_id, reason, deleting=True))
        return reason
