"""Bearer JWT authentication; issue 2 requires the operator role for every node call."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from identity.oidc import InvalidToken, IssuerUnavailable, OidcValidator, Principal

from .problems import Problem

log = logging.getLogger("metalplane.auth")
_bearer = HTTPBearer(auto_error=False)
OPERATOR_ROLES = frozenset({"operator", "platform-admin"})


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
        return await validator.validate(credentials.credentials)
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


async def operator(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.roles & OPERATOR_ROLES:
        raise Problem(403, "forbidden", "Operator role required", f"{who.subject} lacks it")
    return who


Operator = Annotated[Principal, Depends(operator)]
