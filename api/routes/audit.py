"""The audit log of authorization decisions (platform admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from identity.oidc import Principal
from identity.policy import Action
from inventory import audit

from ..auth import authorize
from ..deps import Db
from ..problems import Problem
from ..schemas import AuditEntryOut, AuditList

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditList, summary="Authorization decisions, oldest first")
async def list_audit(
    db: Db,
    _: Annotated[Principal, Depends(authorize("audit", Action.READ))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next` of the previous page")
    ] = None,
) -> AuditList:
    try:
        after = int(cursor) if cursor is not None else None
    except ValueError as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", "cursor is not from `next`") from exc
    found = await audit.entries(db, after=after, limit=limit)
    return AuditList(
        items=[AuditEntryOut.model_validate(e, from_attributes=True) for e in found],
        next=str(found[-1].id) if len(found) == limit else None,
    )
