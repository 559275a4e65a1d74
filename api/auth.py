"""Bearer JWT authentication and authorization by the policy (identity.policy), audited."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from identity.oidc import InvalidToken, IssuerUnavailable, OidcValidator, Principal
from identity.policy import Action, Resource, decide
from inventory import audit

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


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    validator: OidcValidator = request.app.state.token_validator
    try:
        who = await validator.validate(credentials.credentials)
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
    limiter: TokenBuckets = request.app.state.rate_limiter
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
        decision = decide(who, action, Resource(kind=kind, id=resource_id, tenant=tenant))
        async with request.app.state.sessions.begin() as session:
            await audit.record(
                session,
                subject=who.subject,
                tenant=who.tenant,
                roles=sorted(who.roles),
                action=str(action),
                resource_kind=kind,
                resource_id=resource_id,
                allowed=decision.allowed,
                reason=decision.reason,
                request_id=getattr(request.state, "request_id", None),
            )
        if decision.hidden:
            raise Problem(404, "not-found", "Not found", f"no {kind} {resource_id!r}")
        if not decision.allowed:
            raise Problem(403, "forbidden", "Forbidden", decision.reason)
        return who

    return dependency
