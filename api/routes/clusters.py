"""A tenant's clusters: admission at once (quota, capacity, nodes allocated race-free), then the
CreateCluster workflow builds it; scale by changing `node_count`; delete returns everything.
Another tenant's cluster answers 404; members act on the clusters they created."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import (
    CREATE_CLUSTER,
    DELETE_CLUSTER,
    SCALE_CLUSTER,
    ClusterInput,
    cluster_workflow_id,
)
from core.settings import Settings
from identity.oidc import Principal
from identity.policy import Action, Resource
from images import kubeadm
from inventory import clusters, networks
from inventory.errors import InventoryError
from inventory.models import Cluster, Network
from inventory.states import ClusterState, NetworkState

from ..auth import listing_scope, principal, require
from ..cluster_schemas import ClusterCreate, ClusterList, ClusterOut, ClusterScale
from ..deps import Db, Temporal
from ..images_ready import ready_image
from ..openapi import errors
from ..problems import Problem
from ..workflow_start import start_exclusive
from .networks import authorized_network

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])
KIND = "cluster"
MUNGE_KEY_BYTES = 128  # what `mungekey` makes by default (1024 bits)
Caller = Annotated[Principal, Depends(principal)]


def _admission_problem(exc: InventoryError) -> Problem:
    if isinstance(exc, clusters.QuotaExceeded):
        return Problem(409, "quota-exceeded", "Quota exceeded", str(exc))
    if isinstance(exc, clusters.InsufficientCapacity):
        return Problem(409, "insufficient-capacity", "Not enough free nodes", str(exc))
    if isinstance(exc, clusters.ClusterConflict | networks.NetworkConflict):
        return Problem(409, "cluster-exists", "Name taken", str(exc))
    return Problem(409, "admission-refused", "Cannot admit the cluster", str(exc))


async def _authorized(
    request: Request, db: Db, who: Principal, cluster_id: uuid.UUID, action: Action
) -> Cluster:
    """The cluster if the caller may take `action` on it; 404 when it is missing or not the
    caller's to see (one answer for both)."""
    cluster = await db.get(Cluster, cluster_id)
    resource = Resource(
        KIND, str(cluster_id), tenant=cluster.tenant_id if cluster else None,
        owner=cluster.owner if cluster else None, exists=cluster is not None,
    )  # fmt: skip
    await require(request, who, action, resource)
    assert cluster is not None  # a missing cluster was refused as hidden
    return cluster


def _secrets(kind: str, name: str) -> dict[str, object]:
    """Made once per cluster: Slurm's munge key; Kubernetes' CA and bootstrap token."""
    if kind == "slurm":
        return {"munge_key": os.urandom(MUNGE_KEY_BYTES)}
    ca = kubeadm.new_ca(name)
    return {
        "ca_cert": ca.cert_pem.decode(), "ca_key": ca.key_pem,
        "join_token": kubeadm.bootstrap_token(),
    }  # fmt: skip


def _check_size(settings: Settings, node_count: int) -> None:
    if node_count > settings.cluster_max_nodes:
        raise Problem(
            422, "too-many-nodes", "Too many nodes",
            f"a cluster has at most {settings.cluster_max_nodes} nodes",
        )  # fmt: skip


def _input(request: Request, cluster_id: uuid.UUID, remove: int = 0) -> ClusterInput:
    settings = request.app.state.settings
    return ClusterInput(
        cluster_id=str(cluster_id),
        ready_timeout_seconds=settings.cluster_ready_timeout_seconds,
        remove=remove,
        parallelism=settings.cluster_provision_parallelism,
        max_replacements=settings.cluster_max_replacements,
        phone_home_timeout_seconds=settings.phone_home_timeout_seconds,
    )


async def _start(request: Request, client: Client, workflow: str, arg: ClusterInput) -> None:
    await start_exclusive(
        client, workflow, arg, workflow_id=cluster_workflow_id(arg.cluster_id),
        task_queue=request.app.state.cluster_task_queue,
    )  # fmt: skip


async def _no_member_rebooting(db: Db, cluster_id: uuid.UUID) -> None:
    rebooting = await clusters.rebooting_members(db, cluster_id)
    if rebooting:
        raise Problem(
            409, "member-rebooting", "A node is rebooting",
            f"an operator is rebooting {', '.join(rebooting)}; try again once it is active",
        )  # fmt: skip


async def _out(db: Db, cluster: Cluster) -> ClusterOut:
    members = await clusters.members(db, cluster.id)
    return ClusterOut.of(cluster, members, cluster_workflow_id(str(cluster.id)))


async def _network(request: Request, db: Db, who: Principal, body: ClusterCreate) -> Network:
    """The tenant's ready network the request names, or a new one for this cluster. A named
    network is authorized as attaching nodes to it directly would be (another member's or
    tenant's answers as a missing one)."""
    assert who.tenant is not None
    if body.network is None:
        new = networks.NewNetwork(who.tenant, who.subject, f"cluster-{body.name}", None)
        return await networks.create(db, request.app.state.settings, new)
    network = await authorized_network(
        request, db, who, body.network, Action.OPERATE, for_update=True
    )
    if network.state != NetworkState.READY:
        raise Problem(409, "network-not-ready", "Network not ready", f"it is {network.state}")
    return network


@router.post(
    "", response_model=ClusterOut, status_code=status.HTTP_201_CREATED,
    responses=errors(404, 409, 422, 503),
)  # fmt: skip
async def create_cluster(
    request: Request, body: ClusterCreate, db: Db, client: Temporal, who: Caller
) -> ClusterOut:
    """Admit the cluster at once: its nodes (the GPU model asked for, within the tenant's node
    and GPU quotas, on one leaf and IB subnet where possible) and its network are allocated
    before the answer. It is `ready` when the head node reports every node up and a test job
    run on all of them (watch /v1/events, kind `cluster`)."""
    await require(request, who, Action.CREATE, Resource(KIND, tenant=who.tenant))
    if who.tenant is None:
        raise Problem(403, "no-tenant", "No tenant", "the token names no tenant")
    settings = request.app.state.settings
    _check_size(settings, body.node_count)
    image = ready_image(request, body.image)
    try:
        network = await _network(request, db, who, body)
        cluster = Cluster(
            id=uuid.uuid4(), tenant_id=who.tenant, owner=who.subject, name=body.name,
            kind=body.kind, node_count=body.node_count, gpu_model=body.gpu_model,
            image=image.name, network_id=network.id, network_owned=body.network is None,
            state=ClusterState.CREATING.value, **_secrets(body.kind, body.name),
            storage_mounts=[m.model_dump() for m in body.storage_mounts],
        )  # fmt: skip
        await clusters.create(db, cluster)
    except InventoryError as exc:
        await db.rollback()
        raise _admission_problem(exc) from exc
    await db.commit()
    await db.refresh(cluster)
    try:
        await _start(request, client, CREATE_CLUSTER, _input(request, cluster.id))
    except Problem as problem:  # not started: say so; deleting it returns its nodes
        await clusters.set_state(
            db, cluster.id, ClusterState.FAILED, (ClusterState.CREATING,), problem.title
        )
        await db.commit()
        raise
    return await _out(db, cluster)


@router.get("", response_model=ClusterList)
async def list_clusters(
    request: Request,
    db: Db,
    who: Caller,
    state: Annotated[ClusterState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[uuid.UUID | None, Query(description="`next` of the previous page")] = None,
) -> ClusterList:
    """Platform admins see every tenant's; tenant admins and viewers their tenant's; members
    the ones they created."""
    await require(request, who, Action.READ, Resource(KIND, tenant=who.tenant))
    scope = listing_scope(who)
    if scope is None:
        return ClusterList(items=[])
    tenant, owner = scope
    found = await clusters.listing(
        db, tenant=tenant, owner=owner, state=state, after=cursor, limit=limit
    )
    members = await clusters.members_by_cluster(db, [c.id for c in found])
    return ClusterList(
        items=[ClusterOut.of(c, members[c.id], cluster_workflow_id(str(c.id))) for c in found],
        next=str(found[-1].id) if len(found) == limit else None,
    )


@router.get("/{cluster_id}", response_model=ClusterOut, responses=errors(404))
async def get_cluster(request: Request, cluster_id: uuid.UUID, db: Db, who: Caller) -> ClusterOut:
    return await _out(db, await _authorized(request, db, who, cluster_id, Action.READ))


@router.patch(
    "/{cluster_id}", response_model=ClusterOut, status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503),
)  # fmt: skip
async def scale_cluster(
    request: Request,
    cluster_id: uuid.UUID,
    body: ClusterScale,
    db: Db,
    client: Temporal,
    who: Caller,
) -> ClusterOut:
    """Change `node_count`. Up: the new nodes are admitted at once (409 on quota or capacity)
    and join. Down: the head node drains the members chosen (idle ones first; a running job
    finishes first) and they are released."""
    await _authorized(request, db, who, cluster_id, Action.UPDATE)
    _check_size(request.app.state.settings, body.node_count)
    cluster = await clusters.get(db, cluster_id, for_update=True)  # held until the commit
    if cluster.state != ClusterState.READY:
        raise Problem(409, "cluster-not-ready", "Cluster not ready", f"it is {cluster.state}")
    await _no_member_rebooting(db, cluster_id)
    remove = 0
    if body.node_count > cluster.node_count:
        try:
            await clusters.grow(db, cluster.id, body.node_count - cluster.node_count)
        except InventoryError as exc:
            await db.rollback()
            raise _admission_problem(exc) from exc
    elif body.node_count < cluster.node_count:
        remove = cluster.node_count - body.node_count
        cluster.node_count = body.node_count
    else:
        await db.rollback()
        return await _out(db, cluster)
    await clusters.set_state(db, cluster.id, ClusterState.SCALING)  # from ready only
    # Started under the row lock: its first step waits for this commit (or, when the commit
    # fails, finds the cluster not `scaling` and ends without doing anything).
    try:
        await _start(request, client, SCALE_CLUSTER, _input(request, cluster.id, remove))
    except Problem:
        await db.rollback()
        raise
    await db.commit()
    await db.refresh(cluster)
    return await _out(db, cluster)


@router.delete(
    "/{cluster_id}", status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 409, 503)
)
async def delete_cluster(
    request: Request, cluster_id: uuid.UUID, db: Db, client: Temporal, who: Caller
) -> Response:
    """Release every node and delete the cluster's own network; the record goes last. A
    cluster still being created is cancelled, which unwinds the same way."""
    await _authorized(request, db, who, cluster_id, Action.DELETE)
    cluster = await clusters.get(db, cluster_id, for_update=True)
    accepted = Response(status_code=status.HTTP_202_ACCEPTED)
    if cluster.state == ClusterState.DELETING:
        return accepted
    if cluster.state == ClusterState.SCALING:
        raise Problem(409, "operation-running", "Scaling", "delete it once scaling ends")
    await _no_member_rebooting(db, cluster_id)
    workflow_id, before = cluster_workflow_id(str(cluster_id)), cluster.state
    await clusters.set_state(db, cluster_id, ClusterState.DELETING)  # creating, ready or failed
    if before == ClusterState.CREATING:
        try:
            await client.get_workflow_handle(workflow_id).cancel()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                await db.rollback()
                raise Problem(503, "workflow-engine-unavailable", "Try again", str(exc)) from exc
    else:
        try:
            await _start(request, client, DELETE_CLUSTER, _input(request, cluster_id))
        except Problem:
            await db.rollback()
            raise
    await db.commit()
    return accepted
