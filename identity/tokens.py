"""Bearer token validation: signature with the issuer's public key, iss, aud, exp, nbf."""

from __future__ import annotations

from dataclasses import dataclass, field

import jwt

ALLOWED_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
CLOCK_SKEW_SECONDS = 30


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None


class TokenValidator:
    def __init__(self, public_key_pem: bytes, *, issuer: str, audience: str) -> None:
        self._key = public_key_pem
        self._issuer = issuer
        self._audience = audience

    def validate(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=ALLOWED_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise InvalidToken("roles claim must be a list")
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(str(r) for r in roles),
            tenant=claims.get("tenant"),
        )
