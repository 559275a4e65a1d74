"""A tenant's SSH public keys. Members manage their own, tenant admins all of their tenant's;
another tenant's key answers 404. Tenant and owner come from the token, never the body."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from identity.oidc import Principal
from identity.policy import Action, Resource
from inventory import ssh_keys
from inventory.models import SshKey

from ..auth import listing_scope, principal, require
from ..deps import Db
from ..openapi import errors
from ..problems import Problem
from ..schemas import SshKeyChange, SshKeyCreate, SshKeyList, SshKeyOut

router = APIRouter(prefix="/v1/ssh-keys", tags=["ssh-keys"])
KIND = "ssh-key"
Caller = Annotated[Principal, Depends(principal)]


def _out(key: SshKey) -> SshKeyOut:
    return SshKeyOut.model_validate(key, from_attributes=True)


async def _authorized(
    request: Request, db: Db, who: Principal, key_id: uuid.UUID, action: Action
) -> SshKey:
    """The key if the caller may take `action` on it; 404 if it is missing or hidden."""
    key = await db.get(SshKey, key_id)
    resource = Resource(
        KIND, str(key_id), tenant=key.tenant_id if key else None,
        owner=key.owner if key else None, exists=key is not None,
    )  # fmt: skip
    await require(request, who, action, resource)
    assert key is not None  # a missing key was refused as hidden
    return key


@router.post(
    "", response_model=SshKeyOut, status_code=status.HTTP_201_CREATED, responses=errors(409)
)
async def add_ssh_key(request: Request, body: SshKeyCreate, db: Db, who: Caller) -> SshKeyOut:
    """Add a public key to the caller's tenant, owned by the caller."""
    await require(request, who, Action.CREATE, Resource(KIND, tenant=who.tenant))
    if who.tenant is None:
        raise Problem(403, "no-tenant", "No tenant", "the token names no tenant to add keys to")
    parsed = ssh_keys.parse_public_key(body.public_key)
    key = SshKey(
        id=uuid.uuid4(),
        tenant_id=who.tenant,
        owner=who.subject,
        name=body.name,
        public_key=parsed.text,
        fingerprint=parsed.fingerprint,
    )
    try:
        await ssh_keys.add(db, key)
    except ssh_keys.SshKeyConflict as exc:
        raise Problem(409, "ssh-key-exists", "SSH key exists", str(exc)) from exc
    await db.commit()
    await db.refresh(key)
    return _out(key)


@router.get("", response_model=SshKeyList)
async def list_ssh_keys(
    request: Request,
    db: Db,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[uuid.UUID | None, Query(description="`next` of the previous page")] = None,
) -> SshKeyList:
    """Platform admins and viewers see every key; tenant admins and viewers their tenant's;
    members their own."""
    await require(request, who, Action.READ, Resource(KIND, tenant=who.tenant))
    scope = listing_scope(who)
    if scope is None:
        return SshKeyList(items=[])
    tenant, owner = scope
    found = await ssh_keys.listing(db, tenant=tenant, owner=owner, after=cursor, limit=limit)
    return SshKeyList(
        items=[_out(k) for k in found], next=str(found[-1].id) if len(found) == limit else None
    )


@router.get("/{key_id}", response_model=SshKeyOut, responses=errors(404))
async def get_ssh_key(request: Request, key_id: uuid.UUID, db: Db, who: Caller) -> SshKeyOut:
    return _out(await _authorized(request, db, who, key_id, Action.READ))


@router.patch("/{key_id}", response_model=SshKeyOut, responses=errors(404, 409))
async def rename_ssh_key(
    request: Request, key_id: uuid.UUID, body: SshKeyChange, db: Db, who: Caller
) -> SshKeyOut:
    key = await _authorized(request, db, who, key_id, Action.UPDATE)
    try:
        await ssh_keys.rename(db, key, body.name)
    except ssh_keys.SshKeyConflict as exc:
        raise Problem(409, "ssh-key-exists", "SSH key exists", str(exc)) from exc
    await db.commit()
    return _out(key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_ssh_key(request: Request, key_id: uuid.UUID, db: Db, who: Caller) -> Response:
    await _authorized(request, db, who, key_id, Action.DELETE)
    await ssh_keys.remove(db, key_id)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
