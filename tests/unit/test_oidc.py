"""OidcValidator against an issuer served over HTTP (discovery + JWKS) on a pinned port: valid
tokens map to principals; forged, stale and foreign tokens are refused; key rotation refetches
the JWKS once, and unknown key ids cannot make it refetch more than once per interval."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from identity.oidc import ClaimNames, InvalidToken, IssuerUnavailable, OidcValidator

PORT = 18141
ISSUER = f"http://127.0.0.1:{PORT}/realm"
AUDIENCE = "metalplane"


class Issuer:
    """A minimal OIDC issuer: signing keys by kid, discovery and JWKS over HTTP."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"k1": rsa.generate_private_key(65537, 2048)}
        self.jwks_requests = 0

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            else:
                jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(self, kid: str = "k1", alg: str = "RS256", **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "nbf": now,
            "exp": now + 300, "roles": ["tenant-admin"], "org": "acme", "groups": ["gpu"],
        }  # fmt: skip
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid})

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response({"issuer": ISSUER, "jwks_uri": f"{ISSUER}/keys"})

    async def keys_endpoint(self, _: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response(self.jwks())


@pytest_asyncio.fixture
async def issuer() -> AsyncIterator[Issuer]:
    served = Issuer()
    app = web.Application()
    app.router.add_get("/realm/.well-known/openid-configuration", served.discovery)
    app.router.add_get("/realm/keys", served.keys_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    yield served
    await runner.cleanup()


def validator(refresh_interval: float = 30.0) -> OidcValidator:
    return OidcValidator(
        ISSUER,
        audience=AUDIENCE,
        claims=ClaimNames(roles="roles", tenant="org", groups="groups"),
        refresh_interval=refresh_interval,
    )


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_a_valid_token_maps_claims_to_a_principal(issuer: Issuer) -> None:
    who = await validator().validate(issuer.token())
    assert (who.subject, who.tenant) == ("alice", "acme")
    assert who.roles == {"tenant-admin"} and who.groups == {"gpu"}


async def test_clock_skew_within_30_seconds_is_tolerated(issuer: Issuer) -> None:
    now = int(time.time())
    await validator().validate(issuer.token(nbf=now + 20, iat=now + 20))


def _forged(issuer: Issuer) -> dict[str, str]:
    """Every attack the issue names, as a token."""
    now = int(time.time())
    good = issuer.token()
    header, payload, signature = _segments(good)
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(good, options={"verify_signature": False})
    hs256 = ".".join(
        [_b64({"alg": "HS256", "kid": "k1", "typ": "JWT"}), _b64(claims), ""]
    )  # signed below with the public key as an HMAC secret
    mac = hmac.new(public_pem, hs256[:-1].encode(), hashlib.sha256).digest()
    hs256 += base64.urlsafe_b64encode(mac).decode().rstrip("=")
    other_issuer_key = rsa.generate_private_key(65537, 2048)
    return {
        "alg none": f"{_b64({'alg': 'none', 'kid': 'k1'})}.{payload}.",
        "HS256 with the public key": hs256,
        "expired": issuer.token(exp=now - 120, iat=now - 400, nbf=now - 400),
        "not yet valid": issuer.token(nbf=now + 600),
        "wrong issuer": issuer.token(iss="https://evil.example.test"),
        "wrong audience": issuer.token(aud="someone-else"),
        "no subject": issuer.token(sub=None),
        "unknown kid": jwt.encode(
            {**claims}, other_issuer_key, algorithm="RS256", headers={"kid": "k-unknown"}
        ),
        "tampered payload": f"{header}.{_b64({**claims, 'roles': ['platform-admin']})}.{signature}",
        "second issuer, same kid": jwt.encode(
            {**claims}, other_issuer_key, algorithm="RS256", headers={"kid": "k1"}
        ),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg none", "HS256 with the public key", "expired", "not yet valid", "wrong issuer",
        "wrong audience", "no subject", "unknown kid", "tampered payload",
        "second issuer, same kid", "garbage",
    ],
)  # fmt: skip
async def test_forged_and_stale_tokens_are_refused(issuer: Issuer, attack: str) -> None:
    with pytest.raises(InvalidToken):
        await validator().validate(_forged(issuer)[attack])


async def test_rotation_refetches_once_and_unknown_kids_are_rate_limited(issuer: Issuer) -> None:
    checker = validator(refresh_interval=30.0)
    old_token = issuer.token()
    await checker.validate(old_token)
    assert issuer.jwks_requests == 1
    issuer.keys = {"k2": ec.generate_private_key(ec.SECP256R1())}  # the issuer rotates
    rotated = issuer.token(kid="k2", alg="ES256")
    # k2 is unknown but the last fetch is fresh: the rate limit holds the refetch off...
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await checker.validate(rotated)
    assert issuer.jwks_requests == 1
    # ...until the interval has passed: then exactly one refetch picks up the new key.
    checker.refresh_interval = 0.0
    assert (await checker.validate(rotated)).subject == "alice"
    assert issuer.jwks_requests == 2
    checker.refresh_interval = 30.0
    for n in range(20):  # a flood of made-up key ids
        forged = jwt.encode({"sub": "x"}, issuer.keys["k2"], algorithm="ES256",
                            headers={"kid": f"made-up-{n}"})  # fmt: skip
        with pytest.raises(InvalidToken):
            await checker.validate(forged)
    assert issuer.jwks_requests == 2
    with pytest.raises(InvalidToken, match="unknown signing key"):  # k1 was retired
        await checker.validate(old_token)


async def test_algorithm_must_match_the_key(issuer: Issuer) -> None:
    issuer.keys["ec"] = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        {"sub": "x"}, issuer.keys["k1"], algorithm="PS256", headers={"kid": "ec"}
    )  # an RSA signature presented under an EC key id
    with pytest.raises(InvalidToken, match="does not match"):
        await validator().validate(token)


async def test_an_unreachable_issuer_is_not_an_invalid_token() -> None:
    with pytest.raises(IssuerUnavailable):
        await OidcValidator("http://127.0.0.1:1/nowhere", audience=AUDIENCE).validate(
            jwt.encode({"sub": "x"}, rsa.generate_private_key(65537, 2048), algorithm="RS256")
        )
