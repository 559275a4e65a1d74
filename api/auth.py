"""Bearer JWT authentication; issue 2 requires the operator role for every node call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from identity.tokens import InvalidToken, Principal, TokenValidator

from .problems import Problem

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
    validator: TokenValidator = request.app.state.token_validator
    try:
        return validator.validate(credentials.credentials)
    except InvalidToken as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc


async def operator(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.roles & OPERATOR_ROLES:
        raise Problem(403, "forbidden", "Operator role required", f"{who.subject} lacks it")
    return who


Operator = Annotated[Principal, Depends(operator)]
