"""A tenant's isolated networks: create (values allocated at once; switches configured by the
CreateNetwork workflow), read, delete, and attach or detach the tenant's nodes. Another
tenant's network answers 404; members act on the networks they created."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowHandle

from core.contracts import (
    ATTACH_NODE,
    CREATE_NETWORK,
    DELETE_NETWORK,
    DETACH_NODE,
    AttachNodeInput,
    DetachNodeInput,
    NetworkInput,
    network_workflow_id,
    node_network_workflow_id,
)
from identity.oidc import Principal
from identity.policy import Action, Resource
from inventory import networks, nodes, pools
from inventory.models import Network
from inventory.states import NetworkKind, NetworkState, NodeState

from ..auth import listing_scope, principal, require
from ..deps import Db, Temporal
from ..network_schemas import (
    AttachmentIn,
    AttachmentList,
    AttachmentOut,
    NetworkCreate,
    NetworkList,
    NetworkOut,
)
from ..openapi import errors
from ..problems import Problem
from ..schemas import NodeId
from ..workflow_start import start_exclusive

router = APIRouter(prefix="/v1/networks", tags=["networks"])
KIND = "network"
Caller = Annotated[Principal, Depends(principal)]


async def authorized_network(
    request: Request,
    db: AsyncSession,
    who: Principal,
    network_id: uuid.UUID,
    action: Action,
    *,
    for_update: bool = False,
) -> Network:
    """The network if the caller may take `action` on it; 404 when it is missing or not the
    caller's to see (one answer for both). Ids in request bodies go through here too."""
    network = await db.get(Network, network_id, with_for_update=for_update)
    if network is not None and network.kind != NetworkKind.TENANT:
        network = None  # the provisioning network is the fabric's, not a tenant's
    resource = Resource(
        KIND, str(network_id), tenant=network.tenant_id if network else None,
        owner=network.owner if network else None, exists=network is not None,
    )  # fmt: skip
    await require(request, who, action, resource)
    assert network is not None  # a missing network was refused as hidden
    return network


async def _start(
    request: Request, client: Client, workflow: str, arg: object, workflow_id: str
) -> WorkflowHandle:
    return await start_exclusive(
        client, workflow, arg, workflow_id=workflow_id,
        task_queue=request.app.state.network_task_queue,
    )  # fmt: skip


@router.post(
    "", response_model=NetworkOut, status_code=status.HTTP_201_CREATED,
    responses=errors(409, 503),
)  # fmt: skip
async def create_network(
    request: Request, body: NetworkCreate, db: Db, client: Temporal, who: Caller
) -> NetworkOut:
    """Allocate the network's VLAN, VNIs, VRF table, subnet (unless given) and PKey, then
    configure the fabric; the network is `ready` when that is done (watch /v1/events)."""
    await require(request, who, Action.CREATE, Resource(KIND, tenant=who.tenant))
    if who.tenant is None:
        raise Problem(403, "no-tenant", "No tenant", "the token names no tenant")
    new = networks.NewNetwork(who.tenant, who.subject, body.name, body.cidr)
    try:
        network = await networks.create(db, request.app.state.settings, new)
    except networks.CidrOverlap as exc:
        raise Problem(422, "cidr-overlap", "CIDR overlaps", str(exc)) from exc
    except networks.CidrNotAllowed as exc:
        raise Problem(
            422, "cidr-not-allowed", "CIDR not allowed for a tenant network", str(exc),
            allowed_ranges=exc.allowed_ranges,
            prefix_lengths={"min": exc.prefixes[0], "max": exc.prefixes[1]},
        ) from exc  # fmt: skip
    except networks.NetworkConflict as exc:
        raise Problem(409, "network-exists", "Network exists", str(exc)) from exc
    except pools.PoolExhausted as exc:
        raise Problem(409, "pool-exhausted", "No capacity left", str(exc), pool=exc.pool) from exc
    await db.commit()
    await db.refresh(network)
    workflow_id = network_workflow_id(str(network.id))
    try:
        await _start(request, client, CREATE_NETWORK, NetworkInput(str(network.id)), workflow_id)
    except Problem as problem:  # not started: say so on the record, the tenant may delete it
        await networks.set_state(
            db,
            network.id,
            NetworkState.FAILED,
            allowed_from=(NetworkState.CREATING,),
            reason=problem.title,
        )
        await db.commit()
        raise
    return NetworkOut.of(network)


@router.get("", response_model=NetworkList)
async def list_networks(
    request: Request,
    db: Db,
    who: Caller,
    state: Annotated[NetworkState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[uuid.UUID | None, Query(description="`next` of the previous page")] = None,
) -> NetworkList:
    """Platform admins see every tenant's; tenant admins and viewers their tenant's; members
    the ones they created."""
    await require(request, who, Action.READ, Resource(KIND, tenant=who.tenant))
    scope = listing_scope(who)
    if scope is None:
        return NetworkList(items=[])
    tenant, owner = scope
    found = await networks.listing(
        db, tenant=tenant, owner=owner, state=state, after=cursor, limit=limit
    )
    return NetworkList(
        items=[NetworkOut.of(n) for n in found],
        next=str(found[-1].id) if len(found) == limit else None,
    )


@router.get("/{network_id}", response_model=NetworkOut, responses=errors(404))
async def get_network(request: Request, network_id: uuid.UUID, db: Db, who: Caller) -> NetworkOut:
    return NetworkOut.of(await authorized_network(request, db, who, network_id, Action.READ))


@router.delete(
    "/{network_id}", status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 409, 503)
)
async def delete_network(
    request: Request, network_id: uuid.UUID, db: Db, client: Temporal, who: Caller
) -> Response:
    """Remove the network from every switch and the IB subnet, then return its values to the
    pools. Nodes must be detached first (409 otherwise)."""
    await authorized_network(request, db, who, network_id, Action.DELETE)
    try:
        await networks.begin_delete(db, network_id)
    except networks.NetworkConflict as exc:
        raise Problem(409, "network-in-use", "Network in use", str(exc)) from exc
    await db.commit()
    workflow_id = network_workflow_id(str(network_id))
    await _start(request, client, DELETE_NETWORK, NetworkInput(str(network_id)), workflow_id)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.get("/{network_id}/attachments", response_model=AttachmentList, responses=errors(404))
async def list_attachments(
    request: Request, network_id: uuid.UUID, db: Db, who: Caller
) -> AttachmentList:
    await authorized_network(request, db, who, network_id, Action.READ)
    found = await networks.attachments(db, network_id)
    return AttachmentList(
        items=[AttachmentOut(node_id=a.node_id, network_id=a.network_id, state=a.state)
               for a in found]
    )  # fmt: skip


@router.post(
    "/{network_id}/attachments", response_model=AttachmentOut,
    status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 409, 503),
)  # fmt: skip
async def attach_node(
    request: Request,
    network_id: uuid.UUID,
    body: AttachmentIn,
    db: Db,
    client: Temporal,
    who: Caller,
) -> AttachmentOut:
    """Move one of the tenant's nodes into the network (switch ports and IB ports)."""
    network = await authorized_network(request, db, who, network_id, Action.OPERATE)
    # The node in the body is authorized as reading it directly would be: another tenant's
    # (or another member's) node answers 404 like a missing one.
    node = await nodes.find(db, body.node_id)
    owner = await nodes.cluster_owner(db, node) if node else None
    await require(request, who, Action.READ, Resource(
        "node", body.node_id, tenant=node.tenant_id if node else None, owner=owner,
        exists=node is not None,
    ))  # fmt: skip
    assert node is not None
    if node.tenant_id != network.tenant_id:  # a platform admin's mismatch
        raise Problem(
            409, "node-of-another-tenant", "Node held by another tenant",
            f"{node.id} is not held by {network.tenant_id}",
        )  # fmt: skip
    if network.state != NetworkState.READY:
        raise Problem(409, "network-not-ready", "Network not ready", f"it is {network.state}")
    if node.state != NodeState.ACTIVE:  # provisioning moves its ports, releasing too
        raise Problem(409, "node-not-active", "Node not active", f"{node.id} is {node.state}")
    current = await networks.attachment_of(db, node.id)
    if current is not None and current.network_id != network.id:
        raise Problem(409, "node-attached", "Node on another network", "detach it first")
    workflow_id = node_network_workflow_id(node.id)
    await _start(request, client, ATTACH_NODE, AttachNodeInput(str(network.id), node.id),
                 workflow_id)  # fmt: skip
    return AttachmentOut(
        node_id=node.id, network_id=network.id, state="attaching", workflow_id=workflow_id
    )


@router.delete(
    "/{network_id}/attachments/{node_id}", response_model=AttachmentOut,
    status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 409, 503),
)  # fmt: skip
async def detach_node(
    request: Request,
    network_id: uuid.UUID,
    node_id: NodeId,
    db: Db,
    client: Temporal,
    who: Caller,
) -> AttachmentOut:
    """Move the node back to the provisioning network."""
    network = await authorized_network(request, db, who, network_id, Action.OPERATE)
    current = await networks.attachment_of(db, node_id)
    if current is None or current.network_id != network.id:
        raise Problem(404, "not-attached", "Not attached", f"{node_id!r} is not on this network")
    workflow_id = node_network_workflow_id(node_id)
    await _start(request, client, DETACH_NODE, DetachNodeInput(node_id), workflow_id)
    return AttachmentOut(
        node_id=node_id, network_id=network.id, state="detaching", workflow_id=workflow_id
    )
