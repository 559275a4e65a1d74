"""Node inventory and lifecycle operations. Operators enroll and operate nodes and see every
node whole; a tenant's principals read the nodes their tenant holds (a member, those of its
clusters), without the platform's data (BMC, MACs, labels, errors). Any other node answers 404,
exactly like a missing one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from core.contracts import (
    COMMISSION_NODE,
    FIRST_PHASE,
    PROVISION_NODE,
    QUERY_PHASE,
    REBOOT_NODE,
    RELEASE_NODE,
    CommissionNodeInput,
    ProvisionNodeInput,
    RebootNodeInput,
    ReleaseNodeInput,
    RescueNodeInput,
    node_workflow_id,
)
from identity.oidc import Principal
from identity.policy import Action, Resource
from inventory import clusters, nodes, skus
from inventory.errors import NodeConflict, NodeNeedsCleaning
from inventory.models import Node
from inventory.states import (
    COMMISSION_FROM,
    PROVISION_FROM,
    REBOOT_FROM,
    RELEASE_FROM,
    NodeState,
)

from ..auth import authorize, listing_scope, principal, require
from ..deps import Db, Temporal
from ..images_ready import ready_image
from ..openapi import errors
from ..problems import Problem
from ..schemas import (
    LabelFilter,
    MaintenanceRequest,
    NodeEnroll,
    NodeId,
    NodeList,
    NodeOut,
    OperationAccepted,
    ProvisionRequest,
    RebootRequest,
)

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
KIND = "node"
Caller = Annotated[Principal, Depends(principal)]

NODE_ID = SearchAttributeKey.for_keyword("NodeId")
OPERATION = SearchAttributeKey.for_keyword("Operation")
IMAGE_NAME = SearchAttributeKey.for_keyword("ImageName")
PHASE = SearchAttributeKey.for_keyword("Phase")


async def _authorized(
    request: Request, db: Db, who: Principal, node_id: str, action: Action
) -> Node:
    """The node if the caller may take `action` on it; 404 if it is missing or not the
    caller's to see (the same answer)."""
    node, resource = await node_resource(db, node_id)
    await require(request, who, action, resource)
    assert node is not None  # a missing node was refused as hidden
    return node


async def node_resource(db: AsyncSession, node_id: str) -> tuple[Node | None, Resource]:
    """The node (None: missing) and what the policy decides on: its tenant and owner."""
    node = await nodes.find(db, node_id)
    resource = Resource(
        KIND, node_id, tenant=node.tenant_id if node else None,
        owner=await nodes.cluster_owner(db, node) if node else None, exists=node is not None,
    )  # fmt: skip
    return node, resource


def _out(who: Principal, node: Node, *, phase: str | None = None, facts: bool = False) -> NodeOut:
    return NodeOut.of(node, phase=phase, with_facts=facts, platform_view=who.tenant is None)


def _wrong_state(node: Node, done: str, allowed: Sequence[str]) -> Problem:
    """409 node-busy while an operation holds the node, else invalid-node-state."""
    busy = node.state in nodes.HELD_STATE.values()
    return Problem(
        409,
        "node-busy" if busy else "invalid-node-state",
        f"Node cannot be {done} now",
        f"node {node.id!r} is {node.state}; it can be {done} when: " + ", ".join(allowed),
    )


async def _phase(client: Client, node: Node) -> str | None:
    if not node.workflow_id or node.state not in nodes.HELD_STATE.values():
        return None
    try:
        handle: WorkflowHandle = client.get_workflow_handle(node.workflow_id)
        return await asyncio.wait_for(handle.query(QUERY_PHASE), timeout=2)
    except (RPCError, TimeoutError, WorkflowQueryFailedError):
        # best effort (no worker may be up to answer): the state is authoritative
        return None


@router.get("", response_model=NodeList, summary="List nodes")
async def list_nodes(
    request: Request,
    db: Db,
    who: Caller,
    state: Annotated[NodeState | None, Query(description="Only nodes in this state")] = None,
    label: Annotated[
        list[LabelFilter] | None,
        Query(
            description="Only nodes with this label, as key=value; repeat to require all",
            max_length=16,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    cursor: Annotated[NodeId | None, Query(description="`next` of the previous page")] = None,
) -> NodeList:
    """Operators and platform viewers see every node; a tenant's principals the nodes their
    tenant holds (members: those of their clusters)."""
    await require(request, who, Action.READ, Resource(KIND, tenant=who.tenant))
    scope = listing_scope(who) if who.tenant is not None else (None, None)
    if scope is None:
        return NodeList(items=[])
    wanted = dict(pair.split("=", 1) for pair in label or [])
    found = await nodes.list_nodes(
        db, state=state, labels=wanted, limit=limit, after=cursor, tenant=scope[0], owner=scope[1]
    )
    next_cursor = found[-1].id if len(found) == limit else None
    return NodeList(items=[_out(who, n) for n in found], next=next_cursor)


@router.get(
    "/{node_id}",
    response_model=NodeOut,
    summary="One node, with its current phase",
    responses=errors(404),
)
async def get_node(
    request: Request, node_id: NodeId, db: Db, client: Temporal, who: Caller
) -> NodeOut:
    node = await _authorized(request, db, who, node_id, Action.READ)
    return _out(who, node, phase=await _phase(client, node), facts=True)


@router.post(
    "",
    response_model=NodeOut,
    status_code=status.HTTP_201_CREATED,
    summary="Enroll",
    responses=errors(409),
)
async def enroll_node(
    body: NodeEnroll,
    request: Request,
    db: Db,
    client: Temporal,
    who: Annotated[Principal, Depends(authorize(KIND, Action.CREATE))],
) -> NodeOut:
    """With `commission_on_enroll` (the default) the node is enrolled `inspecting` and
    CommissionNode starts at once: it is available only once its hardware matched its SKU."""
    settings = request.app.state.settings
    if body.sku is not None:
        _known_sku(request, body.sku)
    commission = settings.commission_on_enroll
    try:
        node = await nodes.enroll(
            db,
            nodes.NewNode(
                id=body.id,
                vendor=body.vendor,
                model=body.model,
                macs=body.macs,
                bmc_protocol=body.bmc.protocol,
                bmc_address=body.bmc.address,
                bmc_username=body.bmc.username,
                bmc_password=body.bmc.password.get_secret_value(),
                bmc_redfish_address=body.bmc.redfish_address,
                gpu_vendor=body.gpu.vendor,
                gpu_model=body.gpu.model,
                gpu_count=body.gpu.count,
                labels=body.labels,
                agent_image=body.agent_image,
                console_address=body.console,
                sku=body.sku,
                commission_by=node_workflow_id(body.id) if commission else None,
            ),
        )
        if commission:  # committed once it runs: its claim finds the node enrolled for it
            await _start_commission(client, request, node)
        await db.commit()
    except NodeConflict as exc:
        raise Problem(
            409, "node-conflict", "Node conflicts with an enrolled one", str(exc)
        ) from exc
    return _out(who, node)


def _known_sku(request: Request, name: str) -> None:
    catalog = request.app.state.settings.sku_catalog or skus.CATALOG
    try:
        skus.get(name, catalog)
    except skus.UnknownSku as exc:
        raise Problem(422, "unknown-sku", "Unknown SKU", str(exc)) from exc


async def _start_commission(client: Client, request: Request, node: Node) -> OperationAccepted:
    timeout = request.app.state.settings.inspect_timeout_seconds
    return await _start(
        client, request, node, COMMISSION_NODE, CommissionNodeInput(node.id, timeout),
        "commission",
    )  # fmt: skip


def _not_in_a_cluster(node: Node) -> None:
    """A cluster's nodes are its workflows' to provision and release."""
    if node.cluster_id is not None:
        raise Problem(
            409, "node-in-cluster", "Node belongs to a cluster",
            f"node {node.id!r} is in cluster {node.cluster_id}; scale or delete the cluster",
        )  # fmt: skip


async def cluster_ready(db: Db, node: Node) -> None:
    """409 while the node's cluster's workflows act on its nodes; its row stays locked, so a
    claim made now is seen by a scale or delete that comes next."""
    if node.cluster_id is not None:
        cluster = await clusters.get(db, node.cluster_id, for_update=True)
        if cluster.state != "ready":
            raise Problem(
                409, "cluster-not-ready", "Its cluster is busy",
                f"node {node.id!r} is in cluster {cluster.id}, which is {cluster.state}",
            )  # fmt: skip


async def _start(
    client: Client,
    request: Request,
    node: Node,
    workflow: str,
    arg: object,
    operation: str,
    extra: list[SearchAttributePair] | None = None,
) -> OperationAccepted:
    workflow_id = node_workflow_id(node.id)
    try:
        handle = await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=request.app.state.baremetal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(NODE_ID, node.id),
                    SearchAttributePair(OPERATION, operation),
                    SearchAttributePair(PHASE, FIRST_PHASE[workflow]),
                    *(extra or []),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        raise Problem(
            409,
            "node-busy",
            "Node is busy",
            f"an operation is already running on node {node.id!r} ({workflow_id})",
        ) from exc
    return OperationAccepted(
        node_id=node.id, operation=operation, workflow_id=workflow_id, run_id=handle.result_run_id
    )


@router.post(
    "/{node_id}/provision",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Provision the node with a golden image",
    responses=errors(404, 409),
)
async def provision_node(
    node_id: NodeId,
    body: ProvisionRequest,
    request: Request,
    db: Db,
    client: Temporal,
    who: Caller,
) -> OperationAccepted:
    node = await _authorized(request, db, who, node_id, Action.OPERATE)
    _not_in_a_cluster(node)
    image = ready_image(request, body.image)
    if node.state not in PROVISION_FROM:
        raise _wrong_state(node, "provisioned", PROVISION_FROM)
    return await _start(
        client,
        request,
        node,
        PROVISION_NODE,
        ProvisionNodeInput(
            node_id=node.id,
            image=image.name,
            phone_home_timeout_seconds=request.app.state.settings.phone_home_timeout_seconds,
        ),
        "provision",
        [SearchAttributePair(IMAGE_NAME, image.name)],
    )


@router.post(
    "/{node_id}/release",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Power off the node, clear tenant state and make it available",
    responses=errors(404, 409),
)
async def release_node(
    node_id: NodeId, request: Request, db: Db, client: Temporal, who: Caller
) -> OperationAccepted:
    node = await _authorized(request, db, who, node_id, Action.OPERATE)
    _not_in_a_cluster(node)
    if node.state not in RELEASE_FROM:
        raise _wrong_state(node, "released", RELEASE_FROM)
    release = ReleaseNodeInput(
        node.id, clean_timeout_seconds=request.app.state.settings.clean_timeout_seconds
    )
    return await _start(client, request, node, RELEASE_NODE, release, "release")


@router.post(
    "/{node_id}/commission",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Inspect the node again and check it against its SKU",
    description="From `available`, `failed` or `maintenance`, when no tenant's data may be on "
    "it: its agent boots, reports its hardware (the node's hardware record) and the node is "
    "`available` if it matches its SKU, else `maintenance` with the differences.",
    responses=errors(404, 409),
)
async def commission_node(
    node_id: NodeId, request: Request, db: Db, client: Temporal, who: Caller
) -> OperationAccepted:
    node = await _authorized(request, db, who, node_id, Action.OPERATE)
    if node.state not in COMMISSION_FROM:
        raise _wrong_state(node, "commissioned", COMMISSION_FROM)
    if node.needs_cleaning:
        raise Problem(
            409, "node-needs-cleaning", "Node needs cleaning",
            f"node {node.id!r} has not been cleaned since its last tenant: release it first",
        )  # fmt: skip
    return await _start_commission(client, request, node)


@router.post(
    "/{node_id}/reboot",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Power the active node off and on again",
    description="The ACPI power button first (hard off after a grace period) unless `hard`. A "
    "node whose image is stateless network boots it again: the reboot ends when that boot has "
    "phoned home and its tuning is verified. A cluster's node stays in its cluster. Operators "
    "reboot any node; a tenant's admins and members the nodes they hold (members: those of "
    "their clusters).",
    responses=errors(404, 409),
)
async def reboot_node(
    node_id: NodeId,
    request: Request,
    db: Db,
    client: Temporal,
    who: Caller,
    body: RebootRequest | None = None,
) -> OperationAccepted:
    reboot = RebootNodeInput(
        node_id=node_id,
        hard=(body or RebootRequest()).hard,
        phone_home_timeout_seconds=request.app.state.settings.phone_home_timeout_seconds,
    )
    return await power_operation(
        request, db, client, who, reboot, REBOOT_NODE, "reboot", "rebooted", REBOOT_FROM,
        nodes.claim_for_reboot,
    )  # fmt: skip


async def power_operation(
    request: Request, db: Db, client: Client, who: Principal,
    arg: RebootNodeInput | RescueNodeInput, workflow: str, operation: str, done: str,
    allowed: Sequence[str], claim: Callable[..., Awaitable[Node]],
) -> OperationAccepted:  # fmt: skip
    """Start a power operation of the node's tenant or an operator (reboot, rescue,
    unrescue) on the node of `arg`. Claimed here, under its cluster's lock, committed once
    the workflow runs: a scale or delete of the cluster then finds the member held (the
    workflow's claim repeats it)."""
    node = await _authorized(request, db, who, arg.node_id, Action.POWER)
    if node.state not in allowed:
        raise _wrong_state(node, done, allowed)
    await cluster_ready(db, node)
    try:
        await claim(db, node.id, workflow_id=node_workflow_id(node.id))
    except NodeConflict as exc:
        raise Problem(409, "node-busy", f"Node cannot be {done} now", str(exc)) from exc
    accepted = await _start(client, request, node, workflow, arg, operation)
    await db.commit()
    return accepted


@router.put(
    "/{node_id}/maintenance",
    response_model=NodeOut,
    summary="Take the node out of service, with a reason",
    description="From `available` or `failed`, when no tenant or cluster holds it: the node is "
    "`maintenance` and never allocated or claimed until an operator returns it. Again on a node "
    "in maintenance: the new reason.",
    responses=errors(404, 409),
)
async def enter_maintenance(
    node_id: NodeId, body: MaintenanceRequest, request: Request, db: Db, who: Caller
) -> NodeOut:
    node = await _authorized(request, db, who, node_id, Action.OPERATE)
    try:
        node = await nodes.enter_maintenance(db, node.id, reason=body.reason)
    except NodeConflict as exc:
        raise Problem(409, "invalid-node-state", "Node cannot go to maintenance", str(exc)) from exc
    await db.commit()
    return _out(who, node)


@router.delete(
    "/{node_id}/maintenance",
    response_model=NodeOut,
    summary="Return the node in maintenance to service (available)",
    responses=errors(404, 409),
)
async def leave_maintenance(node_id: NodeId, request: Request, db: Db, who: Caller) -> NodeOut:
    node = await _authorized(request, db, who, node_id, Action.OPERATE)
    try:
        node = await nodes.leave_maintenance(
            db, node.id, reason=f"returned to service by {who.subject}"
        )
    except NodeNeedsCleaning as exc:
        raise Problem(409, "node-needs-cleaning", "Node needs cleaning", str(exc)) from exc
    except NodeConflict as exc:
        raise Problem(409, "invalid-node-state", "Node is not in maintenance", str(exc)) from exc
    await db.commit()
    return _out(who, node)
