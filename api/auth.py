"""Bearer JWT authentication and authorization by the policy (identity.policy), audited."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from identity.oidc import InvalidToken, IssuerUnavailable, OidcValidator, Principal
from identity.policy import Action, Decision, Resource, Role, decide
from inventory import audit, tenants

from .problems import Problem
from .ratelimit import TokenBuckets

log = logging.getLogger("metalplane.auth")
_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="metalplane"'},
    )


async def authenticate(app: FastAPI, token: str | None) -> Principal:
    """The principal of a bearer token, charged against its rate limit; a Problem otherwise."""
    if not token:
        raise _unauthorized("missing bearer token")
    validator: OidcValidator = app.state.token_validator
    try:
        who = await validator.validate(token)
    except InvalidToken as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    except IssuerUnavailable as exc:
        log.warning("token issuer unavailable: %s", exc)
        raise Problem(
            503,
            "issuer-unavailable",
            "Token issuer unavailable",
            "the token issuer's keys cannot be fetched right now; retry shortly",
            headers={"Retry-After": "5"},
        ) from exc
    limiter: TokenBuckets = app.state.rate_limiter
    wait = limiter.take(who.subject)
    if wait is not None:
        raise Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"{who.subject} exceeded {limiter.rate:g} requests/s (burst {limiter.burst})",
            headers={"Retry-After": limiter.retry_after_header(wait)},
        )
    return who


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None and credentials.scheme.lower() != "bearer":
        credentials = None
    return await authenticate(request.app, credentials.credentials if credentials else None)


async def decide_and_record(
    app: FastAPI, who: Principal, action: Action, resource: Resource, request_id: str | None
) -> Decision:
    """Decide by the policy and write the decision to the audit log."""
    async with app.state.sessions.begin() as session:
        tenant_active = True
        if who.tenant is not None and action != Action.READ:
            tenant_active = await tenants.is_active(session, who.tenant)
        decision = decide(who, action, resource, tenant_active=tenant_active)
        await audit.record(
            session,
            subject=who.subject,
            tenant=who.tenant,
            roles=sorted(who.roles),
            action=str(action),
            resource_kind=resource.kind,
            resource_id=resource.id,
            allowed=decision.allowed,
            reason=decision.reason,
            request_id=request_id,
        )
    return decision


def refusal(decision: Decision, resource: Resource) -> Problem | None:
    """The answer to a denied decision: 404 when the resource must stay hidden, else 403."""
    if decision.hidden:
        return Problem(404, "not-found", "Not found", f"no {resource.kind} {resource.id!r}")
    if not decision.allowed:
        return Problem(403, decision.problem, "Forbidden", decision.reason)
    return None


async def require(request: Request, who: Principal, action: Action, resource: Resource) -> None:
    """Decide `action` on an already loaded `resource`, audited; raise 403/404 if denied."""
    request_id = getattr(request.state, "request_id", None)
    decision = await decide_and_record(request.app, who, action, resource, request_id)
    if problem := refusal(decision, resource):
        raise problem


def authorize(
    kind: str, action: Action, *, tenant_param: str | None = None
) -> Callable[..., Awaitable[Principal]]:
    """A dependency: decide `action` on `kind` (the resource id from the path; its tenant from
    path parameter `tenant_param`) by the policy, record the decision in the audit log, and
    refuse with 403, or 404 when hidden."""

    async def dependency(
        request: Request, who: Annotated[Principal, Depends(principal)]
    ) -> Principal:
        resource_id = next(iter(request.path_params.values()), None)
        tenant = request.path_params.get(tenant_param) if tenant_param else None
        await require(request, who, action, Resource(kind=kind, id=resource_id, tenant=tenant))
        return who

    return dependency


def listing_scope(who: Principal) -> tuple[str | None, str | None] | None:
    """(tenant, owner) a listing of tenant-owned records is limited to; None: nothing to see.
    Platform admins see every tenant's; tenant admins and viewers their tenant's; members
    the ones they created."""
    if Role.PLATFORM_ADMIN in who.roles:
        return None, None
    if who.tenant is None:
        return None
    if Role.TENANT_ADMIN in who.roles or Role.VIEWER in who.roles:
        return who.tenant, None
    return who.tenant, who.subject
