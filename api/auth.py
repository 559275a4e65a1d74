"""Bearer JWT authentication and authorization by the policy (identity.policy), audited."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from identity.oidc import InvalidToken, IssuerUnavailable, OidcValidator, Principal
from identity.policy import Action, Decision, Resource, Role, decide, roles_of
from inventory import audit, tenants

from .problems import Problem
from .ratelimit import TokenBuckets

log = logging.getLogger("metalplane.auth")
_bearer = HTTPBearer(auto_error=False)  # declares the scheme in the OpenAPI document


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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, authenticated (and charged) once per request at the boundary."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:  # a route outside /v1 that wants a principal
        who = await authenticate(request.app, bearer_token(request.headers.get("authorization")))
        request.state.principal = who
    return who


async def decide_and_record(
    app: FastAPI,
    who: Principal,
    action: Action,
    resource: Resource,
    request_id: str | None,
    client_request_id: str | None = None,
    request_session: AsyncSession | None = None,
) -> Decision:
    """Decide by the policy and write the decision to the audit log, committed before the
    answer. With the request's own session when it has one: a request that held its session's
    connection while waiting for a second one for the audit deadlocked the pool under a burst
    (200 provisions at once waited 30 s and failed)."""
    async with _audit_transaction(app, request_session) as session:
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
            client_request_id=client_request_id,
        )
    return decision


@asynccontextmanager
async def _audit_transaction(
    app: FastAPI, request_session: AsyncSession | None
) -> AsyncIterator[AsyncSession]:
    if request_session is None:
        async with app.state.sessions.begin() as session:
            yield session
        return
    yield request_session
    await request_session.commit()  # the route's reads so far end here too: nothing is pending


def refusal(decision: Decision, resource: Resource) -> Problem | None:
    """The answer to a denied decision: 404 when the resource is missing or must stay hidden
    (the same answer for both), else 403."""
    if decision.hidden:
        return Problem(404, "not-found", "Not found", f"no {resource.kind} {resource.id!r}")
    if not decision.allowed:
        return Problem(403, decision.problem, "Forbidden", decision.reason)
    return None


async def require(request: Request, who: Principal, action: Action, resource: Resource) -> None:
    """Decide `action` on an already loaded `resource`, audited; raise 403/404 if denied."""
    state = request.state
    decision = await decide_and_record(
        request.app, who, action, resource, getattr(state, "request_id", None),
        getattr(state, "client_request_id", None), getattr(state, "db_session", None),
    )  # fmt: skip
    if problem := refusal(decision, resource):
        raise problem


def authorize(kind: str, action: Action) -> Callable[..., Awaitable[Principal]]:
    """A dependency for platform kinds (switches, fabric, images, audit) and collections: decide
    `action` on `kind` by the policy, record the decision in the audit log, refuse with 403.
    Routes on a tenant's records load the record first and call `require` with it."""

    async def dependency(
        request: Request, who: Annotated[Principal, Depends(principal)]
    ) -> Principal:
        resource_id = next(iter(request.path_params.values()), None)
        await require(request, who, action, Resource(kind=kind, id=resource_id))
        return who

    return dependency


def listing_scope(who: Principal) -> tuple[str | None, str | None] | None:
    """(tenant, owner) a listing of tenant-owned records is limited to; None: nothing to see.
    Platform admins and viewers see every tenant's; tenant admins and viewers their tenant's;
    members the ones they created (the policy's visibility rule, as a query)."""
    roles = roles_of(who)
    if who.tenant is None:
        return (None, None) if roles & {Role.PLATFORM_ADMIN, Role.PLATFORM_VIEWER} else None
    if roles & {Role.TENANT_ADMIN, Role.VIEWER}:
        return who.tenant, None
    return who.tenant, who.subject


def websocket_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The bearer token and the subprotocol to answer with, if the token came as one."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip(), None
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith("bearer."):
            return offered.removeprefix("bearer."), offered
    return None, None
