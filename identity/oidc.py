"""Bearer JWTs from an OIDC issuer found by discovery.

The issuer's `/.well-known/openid-configuration` names its JWKS; keys are cached by `kid`. A
token signed with an unknown `kid` (the issuer rotated its keys) refetches the JWKS once, at
most every `refresh_interval` seconds, so a flood of forged `kid`s cannot make us hammer the
issuer. Only asymmetric algorithms from ALLOWED_ALGORITHMS are accepted, and the algorithm
must match the key's, which rules out `alg: none` and HS256-with-the-public-key.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK

ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})
CLOCK_SKEW_SECONDS = 30
# Claims are stored (audit log, owners) and compared in queries: bounded, printable text.
_SUBJECT = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,255}")
_TENANT = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a tenant id: a DNS label
_NAME = re.compile(r"[\x21-\x7e]{1,128}")  # a role or group
MAX_NAMES = 64


class InvalidToken(Exception):
    """The token is not acceptable (the message says why; it is safe to show the caller)."""


class IssuerUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched."""


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    expires_at: float | None = None  # the token's `exp` (Unix time): long streams end there


@dataclass(frozen=True)
class ClaimNames:
    """Which claims carry roles, tenant and groups (providers differ)."""

    roles: str = "roles"
    tenant: str = "tenant"
    groups: str = "groups"


def _strings(claims: dict[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name, [])
    if isinstance(value, str):
        value = value.split()  # space-separated, like OAuth scopes
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidToken(f"claim {name!r} must be a list of strings")
    if len(value) > MAX_NAMES or not all(_NAME.fullmatch(v) for v in value):
        raise InvalidToken(f"claim {name!r} must list at most {MAX_NAMES} names of printable ASCII")
    return frozenset(value)


class OidcValidator:
    def __init__(
        self,
        issuer: str,
        *,
        audience: str,
        claims: ClaimNames | None = None,
        refresh_interval: float = 30.0,
        http_timeout: float = 5.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.claims = claims or ClaimNames()
        self.refresh_interval = refresh_interval
        self._http_timeout = http_timeout
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, tuple[PyJWK, str | None]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.jwks_fetches = 0  # observable: key rotation and rate limiting are tested with it

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            reply = await client.get(url)
            reply.raise_for_status()
            document = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable(f"{url}: {exc}") from exc
        if not isinstance(document, dict):
            raise IssuerUnavailable(f"{url}: not a JSON object")
        return document

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=self._http_timeout) as client:
            if self._jwks_uri is None:
                discovery = await self._get_json(
                    client, f"{self.issuer}/.well-known/openid-configuration"
                )
                if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
                    raise IssuerUnavailable("discovery document names another issuer")
                self._jwks_uri = str(discovery.get("jwks_uri") or "")
                if not self._jwks_uri:
                    raise IssuerUnavailable("discovery document has no jwks_uri")
            jwks = await self._get_json(client, self._jwks_uri)
        keys: dict[str | None, tuple[PyJWK, str | None]] = {}
        for entry in jwks.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not accept
            keys[entry.get("kid")] = (key, entry.get("alg"))
        self._keys = keys
        self._fetched_at = time.monotonic()
        self.jwks_fetches += 1

    async def _key(self, kid: str | None) -> tuple[PyJWK, str | None]:
        if kid not in self._keys:
            async with self._lock:
                fresh = time.monotonic() - self._fetched_at < self.refresh_interval
                if kid not in self._keys and not fresh:
                    await self._refresh()
        if kid is None and kid not in self._keys and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise InvalidToken(f"unknown signing key {kid!r}")
        return self._keys[kid]

    async def validate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
        key, declared = await self._key(header.get("kid"))
        family = {"RSA": ("RS", "PS"), "EC": ("ES",)}.get(key.key_type, ())
        if (declared and declared != algorithm) or not algorithm.startswith(family):
            raise InvalidToken(f"algorithm {algorithm!r} does not match the signing key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        tenant = claims.get(self.claims.tenant)
        if tenant is not None and not (isinstance(tenant, str) and _TENANT.fullmatch(tenant)):
            raise InvalidToken(f"claim {self.claims.tenant!r} must be a tenant id (a DNS label)")
        subject = claims["sub"]
        if not (isinstance(subject, str) and _SUBJECT.fullmatch(subject)):
            raise InvalidToken("claim 'sub' must be 1-255 characters without control characters")
        return Principal(
            subject=subject,
            roles=_strings(claims, self.claims.roles),
            tenant=tenant,
            groups=_strings(claims, self.claims.groups),
            expires_at=float(claims["exp"]),
        )
