"""Discovered nodes: MACs that network booted without belonging to a node (platform roles).
Enrolling a node with the MAC (`POST /v1/nodes`) accepts one; an operator may dismiss one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from identity.oidc import Principal
from identity.policy import Action
from inventory import discovery

from ..auth import authorize
from ..deps import Db
from ..openapi import errors
from ..problems import Problem
from ..schemas import DiscoveredNodeList, DiscoveredNodeOut, Mac

router = APIRouter(prefix="/v1/discovered-nodes", tags=["nodes"])
KIND = "discovered-node"


@router.get(
    "", response_model=DiscoveredNodeList,
    summary="MACs that network booted without a node, by MAC; never booted by the platform",
)  # fmt: skip
async def list_discovered(
    db: Db,
    _: Annotated[Principal, Depends(authorize(KIND, Action.READ))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[Mac | None, Query(description="`next` of the previous page")] = None,
) -> DiscoveredNodeList:
    found = await discovery.listing(db, after=cursor, limit=limit)
    return DiscoveredNodeList(
        items=[DiscoveredNodeOut.model_validate(d, from_attributes=True) for d in found],
        next=found[-1].mac if len(found) == limit else None,
    )


@router.delete(
    "/{mac}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404),
    summary="Dismiss a discovered node (it is recorded again if it boots again)",
)  # fmt: skip
async def dismiss_discovered(
    mac: Mac, db: Db, who: Annotated[Principal, Depends(authorize(KIND, Action.DELETE))]
) -> Response:
    try:
        await discovery.dismiss(db, mac, by=who.subject)
    except discovery.DiscoveredNotFound as exc:
        raise Problem(404, "not-found", "Not found", str(exc)) from exc
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
