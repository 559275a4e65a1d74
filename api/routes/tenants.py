"""Tenants: platform admins create, change (suspend, quotas) and delete them; a tenant's own
principals read it. Another tenant answers 404."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from identity.oidc import Principal
from identity.policy import Action, Resource
from inventory import tenants
from inventory.models import Tenant

from ..auth import authorize, listing_scope, principal, require
from ..deps import Db
from ..openapi import errors
from ..problems import Problem
from ..schemas import (
    Quotas,
    TenantChange,
    TenantCreate,
    TenantId,
    TenantList,
    TenantOut,
    TenantUsage,
)

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


KIND = "tenant"
Caller = Annotated[Principal, Depends(principal)]


def _allow(action: Action) -> object:
    return Depends(authorize(KIND, action))


def _not_found(tenant_id: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"no tenant {tenant_id!r}")


async def _authorized(
    request: Request, db: Db, who: Principal, tenant_id: str, action: Action
) -> Tenant:
    """The tenant if the caller may take `action` on it; 404 when it is missing (or deleted)
    or another tenant (one answer for both)."""
    try:
        tenant: Tenant | None = await tenants.get(db, tenant_id)
    except tenants.TenantNotFound:
        tenant = None
    resource = Resource(KIND, tenant_id, tenant=tenant_id, exists=tenant is not None)
    await require(request, who, action, resource)
    assert tenant is not None  # a missing tenant was refused as hidden
    return tenant


async def _out(db: Db, tenant: Tenant) -> TenantOut:
    used = await tenants.usage(db, tenant.id)
    return TenantOut(
        id=tenant.id,
        display_name=tenant.display_name,
        state=tenant.state,
        quotas=Quotas(
            gpus=tenant.quota_gpus,
            nodes=tenant.quota_nodes,
            storage_gib=tenant.quota_storage_gib,
        ),
        usage=TenantUsage(gpus=used.gpus, nodes=used.nodes),
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


@router.post(
    "", response_model=TenantOut, status_code=status.HTTP_201_CREATED, responses=errors(409)
)
async def create_tenant(
    body: TenantCreate, db: Db, _: Annotated[Principal, _allow(Action.CREATE)]
) -> TenantOut:
    """Create a tenant with its quotas (platform admins). The id of a deleted tenant is never
    given again (409)."""
    tenant = Tenant(
        id=body.id,
        display_name=body.display_name,
        state="active",
        quota_gpus=body.quotas.gpus,
        quota_nodes=body.quotas.nodes,
        quota_storage_gib=body.quotas.storage_gib,
    )
    try:
        await tenants.create(db, tenant)
    except tenants.TenantConflict as exc:
        raise Problem(409, "tenant-exists", "Tenant exists", str(exc)) from exc
    await db.commit()
    await db.refresh(tenant)
    return await _out(db, tenant)


@router.get("", response_model=TenantList)
async def list_tenants(
    db: Db,
    who: Annotated[Principal, _allow(Action.READ)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    state: Annotated[Literal["active", "suspended"] | None, Query()] = None,
) -> TenantList:
    """All tenants for platform admins and viewers; a tenant's principals see only their own."""
    scope = listing_scope(who)
    if scope is None:
        return TenantList(items=[])
    only = scope[0]
    found = await tenants.listing(db, only=only, after=cursor, limit=limit, state=state)
    return TenantList(
        items=[await _out(db, t) for t in found],
        next=found[-1].id if len(found) == limit else None,
    )


@router.get("/{tenant_id}", response_model=TenantOut, responses=errors(404))
async def get_tenant(request: Request, tenant_id: TenantId, db: Db, who: Caller) -> TenantOut:
    """A tenant with its quotas and current usage."""
    return await _out(db, await _authorized(request, db, who, tenant_id, Action.READ))


@router.patch("/{tenant_id}", response_model=TenantOut, responses=errors(404))
async def change_tenant(
    request: Request, tenant_id: TenantId, body: TenantChange, db: Db, who: Caller
) -> TenantOut:
    """Rename, suspend or resume, or change quotas (platform admins). Lowering a quota below
    current usage is allowed: nothing is taken away, new requests are refused."""
    tenant = await _authorized(request, db, who, tenant_id, Action.UPDATE)
    if body.display_name is not None:
        tenant.display_name = body.display_name
    if body.state is not None:
        tenants.change_state(db, tenant, body.state)
    if body.quotas is not None:
        tenant.quota_gpus = body.quotas.gpus
        tenant.quota_nodes = body.quotas.nodes
        tenant.quota_storage_gib = body.quotas.storage_gib
    await db.commit()
    await db.refresh(tenant)
    return await _out(db, tenant)


@router.delete("/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409))
async def delete_tenant(request: Request, tenant_id: TenantId, db: Db, who: Caller) -> Response:
    """Delete a tenant that holds nothing (platform admins). Its id stays taken: a new tenant
    never inherits its history."""
    await _authorized(request, db, who, tenant_id, Action.DELETE)
    try:
        await tenants.remove(db, tenant_id)
    except tenants.TenantNotFound as exc:
        raise _not_found(tenant_id) from exc
    except tenants.TenantConflict as exc:
        raise Problem(409, "tenant-in-use", "Tenant holds resources", str(exc)) from exc
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
