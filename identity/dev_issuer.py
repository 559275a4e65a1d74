"""The local development token issuer of `metalplane up`: an RSA key pair in the data dir.

It is a real OIDC issuer as far as token validation goes: the API serves its discovery
document and JWKS (api/routes/dev_issuer.py) and validates its tokens through discovery like
any other issuer's. `metalplane token --role operator` signs with the private key. The key id
is the key's RFC 7638 thumbprint, so a new key is a new `kid` (rotation).

Only the API (at startup) and `metalplane up` create the key (`ensure_keypair`); `mint` only
reads it: a token signed by a key the running API does not serve is refused as an unknown key,
so minting without the platform's key is an error, not a reason to make one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def ensure_keypair(private_key_file: Path) -> Path:
    """Create the key pair once; return the public key file."""
    public_key_file = private_key_file.with_name("public.pem")
    if not private_key_file.exists():
        private_key_file.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_key_file.touch(mode=0o600)
        private_key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public_key_file.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return public_key_file


class SigningKeyMissingError(FileNotFoundError):
    """The dev issuer's private key is not where the settings say: the platform whose tokens
    are wanted has not started with this data dir (or not at all)."""

    def __init__(self, private_key_file: Path) -> None:
        self.private_key_file = private_key_file
        super().__init__(f"no dev issuer signing key at {private_key_file}")


def default_subject(roles: list[str], tenant: str | None = None) -> str:
    """`dev-<sorted roles joined by '+'>[@tenant]`: tokens of different roles or tenants are
    different principals (ownership and audit follow the subject), the same ones are not."""
    subject = "dev-" + "+".join(sorted(set(roles)))
    return f"{subject}@{tenant}" if tenant else subject


def mint(
    private_key_file: Path,
    *,
    issuer: str,
    audience: str,
    subject: str,
    roles: list[str],
    tenant: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """A token signed with the existing key; SigningKeyMissingError when there is none."""
    try:
        private_pem = private_key_file.read_bytes()
    except FileNotFoundError as missing:
        raise SigningKeyMissingError(private_key_file) from missing
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    if tenant:
        claims["tenant"] = tenant
    kid = _thumbprint(serialization.load_pem_private_key(private_pem, None).public_key())
    return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})


def _public_jwk(public_key: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public_key))
    return {"kty": jwk["kty"], "n": jwk["n"], "e": jwk["e"]}


def _thumbprint(public_key: Any) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(_public_jwk(public_key), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def jwks(private_key_file: Path) -> dict[str, Any]:
    """The issuer's JSON Web Key Set: its one public key."""
    public = serialization.load_pem_public_key(ensure_keypair(private_key_file).read_bytes())
    jwk = _public_jwk(public)
    return {"keys": [{**jwk, "kid": _thumbprint(public), "use": "sig", "alg": "RS256"}]}


def discovery(issuer: str, jwks_uri: str) -> dict[str, Any]:
    """The discovery document (OpenID Connect Discovery 1.0): what a validator needs. Tokens
    come from `metalplane token`; this issuer has no authorization or token endpoint."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["token"],
        "claims_supported": ["sub", "aud", "exp", "iat", "nbf", "iss", "roles", "tenant"],
    }
