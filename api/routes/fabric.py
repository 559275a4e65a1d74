"""The fabric, for operators: switches (credentials go in, never out), the cabling of node NICs
and InfiniBand ports, and the provisioning network."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from core.settings import Settings
from drivers.infiniband.base import InvalidPartition, normalize_guid
from identity.oidc import Principal
from identity.policy import Action
from inventory import fabric, networks, nodes
from inventory.models import Switch

from ..auth import authorize
from ..deps import Db
from ..network_schemas import (
    Cabling,
    ProvisioningNetworkIn,
    ProvisioningNetworkOut,
    SwitchAccessUpdate,
    SwitchEnroll,
    SwitchList,
    SwitchOut,
)
from ..openapi import errors
from ..problems import Problem
from ..schemas import NodeId

router = APIRouter(tags=["fabric"])


def _allow(kind: str, action: Action) -> object:
    return Depends(authorize(kind, action))


def _out(switch: Switch) -> SwitchOut:
    return SwitchOut.model_validate(switch, from_attributes=True)


@router.post(
    "/v1/switches", response_model=SwitchOut, status_code=status.HTTP_201_CREATED,
    responses=errors(409),
)  # fmt: skip
async def enroll_switch(
    body: SwitchEnroll, db: Db, _: Annotated[Principal, _allow("switch", Action.CREATE)]
) -> SwitchOut:
    switch = Switch(
        id=body.id, role=body.role, nos=body.nos.value, mgmt_address=body.mgmt_address,
        username=body.username, password=body.password.get_secret_value(), asn=body.asn,
        vtep_address=body.vtep_address, routing=body.routing,
    )  # fmt: skip
    try:
        await fabric.enroll_switch(db, switch)
    except fabric.FabricConflict as exc:
        raise Problem(409, "switch-exists", "Switch exists", str(exc)) from exc
    await db.commit()
    await db.refresh(switch)
    return _out(switch)


@router.get("/v1/switches", response_model=SwitchList)
async def list_switches(
    db: Db,
    _: Annotated[Principal, _allow("switch", Action.READ)],
    role: Annotated[str | None, Query(pattern="^(leaf|spine)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> SwitchList:
    found = await fabric.switches(db, role=role, after=cursor, limit=limit)
    return SwitchList(
        items=[_out(s) for s in found], next=found[-1].id if len(found) == limit else None
    )


@router.get("/v1/switches/{switch_id}", response_model=SwitchOut, responses=errors(404))
async def get_switch(
    switch_id: NodeId, db: Db, _: Annotated[Principal, _allow("switch", Action.READ)]
) -> SwitchOut:
    try:
        return _out(await fabric.get_switch(db, switch_id))
    except fabric.SwitchNotFound as exc:
        raise Problem(404, "not-found", "Not found", f"no switch {switch_id!r}") from exc


@router.patch("/v1/switches/{switch_id}", response_model=SwitchOut, responses=errors(404))
async def update_switch_access(
    switch_id: NodeId,
    body: SwitchAccessUpdate,
    db: Db,
    _: Annotated[Principal, _allow("switch", Action.UPDATE)],
) -> SwitchOut:
    try:
        switch = await fabric.get_switch(db, switch_id, for_update=True)
    except fabric.SwitchNotFound as exc:
        raise Problem(404, "not-found", "Not found", f"no switch {switch_id!r}") from exc
    if body.mgmt_address is not None:
        switch.mgmt_address = body.mgmt_address
    if body.username is not None:
        switch.username = body.username
    if body.password is not None:
        switch.password = body.password.get_secret_value()
    await db.commit()
    await db.refresh(switch)
    return _out(switch)


@router.delete(
    "/v1/switches/{switch_id}", status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, 409),
)  # fmt: skip
async def delete_switch(
    switch_id: NodeId, db: Db, _: Annotated[Principal, _allow("switch", Action.DELETE)]
) -> Response:
    try:
        await fabric.remove_switch(db, switch_id)
    except fabric.SwitchNotFound as exc:
        raise Problem(404, "not-found", "Not found", f"no switch {switch_id!r}") from exc
    except fabric.FabricConflict as exc:
        raise Problem(409, "switch-in-use", "Switch in use", str(exc)) from exc
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/v1/nodes/{node_id}/cabling", response_model=Cabling, responses=errors(404, 409))
async def set_cabling(
    node_id: NodeId, body: Cabling, db: Db, _: Annotated[Principal, _allow("fabric", Action.UPDATE)]
) -> Cabling:
    """Which switch port each NIC is cabled to, and the node's InfiniBand port GUIDs."""
    if await nodes.find(db, node_id) is None:
        raise Problem(404, "node-not-found", "Node not found", f"node {node_id!r} does not exist")
    try:
        guids = [normalize_guid(g) for g in body.ib_guids]
        links = [fabric.Link(k.mac, k.switch, k.port) for k in body.links]
        if await networks.attachment_of(db, node_id) is not None and (
            set(links) != set(await fabric.links_of(db, node_id))
            or set(guids) != set(await fabric.ib_guids_of(db, node_id))
        ):  # its old ports would stay in the tenant network
            raise Problem(
                409, "node-attached", "Node on a tenant network",
                f"detach {node_id} from its tenant network before changing its cabling",
            )  # fmt: skip
        await fabric.set_links(db, node_id, links)
        await fabric.set_ib_ports(db, node_id, guids, body.ib_subnet)
    except InvalidPartition as exc:
        raise Problem(422, "invalid-guid", "Invalid GUID", str(exc)) from exc
    except fabric.FabricConflict as exc:
        raise Problem(409, "cabling-conflict", "Cabling conflict", str(exc)) from exc
    await db.commit()
    return body


@router.put(
    "/v1/fabric/provisioning-network", response_model=ProvisioningNetworkOut,
    responses=errors(409),
)  # fmt: skip
async def set_provisioning_network(
    request: Request,
    body: ProvisioningNetworkIn,
    db: Db,
    _: Annotated[Principal, _allow("fabric", Action.UPDATE)],
) -> ProvisioningNetworkOut:
    """The network nodes boot and are cleaned in; its VLAN and VNI are held in the pools."""
    settings: Settings = request.app.state.settings
    try:
        network = await networks.ensure_provisioning(
            db, settings, vlan=body.vlan, vni=body.vni, cidr=body.cidr
        )
    except networks.NetworkConflict as exc:
        raise Problem(409, "provisioning-network-conflict", "Values in use", str(exc)) from exc
    await db.commit()
    return ProvisioningNetworkOut(vlan=body.vlan, vni=network.l2vni, cidr=str(network.cidr))


@router.get(
    "/v1/fabric/provisioning-network", response_model=ProvisioningNetworkOut,
    responses=errors(404),
)  # fmt: skip
async def get_provisioning_network(
    db: Db, _: Annotated[Principal, _allow("fabric", Action.READ)]
) -> ProvisioningNetworkOut:
    network = await networks.provisioning(db)
    if network is None or network.vlan is None:
        raise Problem(404, "not-found", "Not found", "no provisioning network is configured")
    return ProvisioningNetworkOut(vlan=network.vlan, vni=network.l2vni, cidr=str(network.cidr))
