"""The local development token issuer of `metalplane up`: an RSA key pair in the data dir.

`metalplane token --role operator` signs with the private key; the API only ever reads the
public key, exactly as it would trust a production issuer's key.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_ID = "metalplane-dev-1"


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
    ensure_keypair(private_key_file)
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
    return jwt.encode(
        claims, private_key_file.read_bytes(), algorithm="RS256", headers={"kid": KEY_ID}
    )
