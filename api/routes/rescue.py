"""Rescue and unrescue (docs/rescue.md): the tenant of an active node boots it into the
agent's ramdisk with its own SSH keys, its disks untouched, and back into its image."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from core.contracts import RESCUE_NODE, UNRESCUE_NODE, RescueNodeInput
from inventory import nodes
from inventory.states import RESCUE_FROM, UNRESCUE_FROM

from ..deps import Db, Temporal
from ..openapi import errors
from ..schemas import NodeId, OperationAccepted, RebootRequest
from .nodes import Caller, power_operation

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


@router.post(
    "/{node_id}/rescue",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Boot the active node into the rescue ramdisk",
    description="Power off (the ACPI power button first unless `hard`), then the agent's "
    "ramdisk network boots with the SSH keys of the node's tenant; nothing on its disks is "
    "touched. The node is `rescue` once the ramdisk phoned home. For operators, and a "
    "tenant's admins and members for the nodes they hold.",
    responses=errors(404, 409),
)
async def rescue_node(
    node_id: NodeId, request: Request, db: Db, client: Temporal, who: Caller,
    body: RebootRequest | None = None,
) -> OperationAccepted:  # fmt: skip
    rescue = RescueNodeInput(
        node_id=node_id, hard=(body or RebootRequest()).hard,
        phone_home_timeout_seconds=request.app.state.settings.phone_home_timeout_seconds,
    )  # fmt: skip
    return await power_operation(
        request, db, client, who, rescue, RESCUE_NODE, "rescue", "rescued", RESCUE_FROM,
        nodes.claim_for_rescue,
    )  # fmt: skip


@router.post(
    "/{node_id}/unrescue",
    response_model=OperationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Boot the node in rescue back into its image",
    description="Power off, then the image boots as after its provisioning (a stateless image "
    "from the network, the others from the disk) and is verified again when it phones home.",
    responses=errors(404, 409),
)
async def unrescue_node(
    node_id: NodeId, request: Request, db: Db, client: Temporal, who: Caller
) -> OperationAccepted:
    unrescue = RescueNodeInput(
        node_id=node_id,
        phone_home_timeout_seconds=request.app.state.settings.phone_home_timeout_seconds,
    )
    return await power_operation(
        request, db, client, who, unrescue, UNRESCUE_NODE, "unrescue", "unrescued",
        UNRESCUE_FROM, nodes.claim_for_unrescue,
    )  # fmt: skip
