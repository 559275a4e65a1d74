"""A tenant's SSH public keys: parsed and fingerprinted like OpenSSH, unique per tenant by name
and by key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.errors import InventoryError
from inventory.models import Node, SshKey

KEY_TYPES = frozenset({
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "ssh-rsa",
})  # fmt: skip
MIN_RSA_BITS = 2048


class SshKeyNotFound(InventoryError):
    pass


class SshKeyConflict(InventoryError):
    pass


@dataclass(frozen=True)
class PublicKey:
    text: str  # "type base64 [comment]", normalized
    fingerprint: str  # "SHA256:..." as `ssh-keygen -l` prints it


def parse_public_key(line: str) -> PublicKey:
    """An OpenSSH public key line, checked: a known type, a body that decodes to that type,
    RSA of at least 2048 bits. Raises ValueError with the reason."""
    fields = line.strip().split(maxsplit=2)
    if len(fields) < 2:
        raise ValueError("expected an OpenSSH public key: '<type> <base64> [comment]'")
    key_type, body = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type {key_type!r} is not one of {', '.join(sorted(KEY_TYPES))}")
    try:
        blob = base64.b64decode(body, validate=True)
        key = load_ssh_public_key(f"{key_type} {body}".encode())
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a valid {key_type} key") from exc
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits, this one has {key.key_size}")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return PublicKey(text=" ".join(fields), fingerprint=f"SHA256:{digest}")


async def add(session: AsyncSession, key: SshKey) -> SshKey:
    try:
        async with session.begin_nested():
            session.add(key)
            await session.flush()
    except IntegrityError as exc:
        what = "name" if "tenant_name" in str(exc.orig) else "key"
        raise SshKeyConflict(f"the tenant already has an SSH key with this {what}") from exc
    return key


async def get(session: AsyncSession, key_id: uuid.UUID) -> SshKey:
    key = await session.get(SshKey, key_id)
    if key is None:
        raise SshKeyNotFound(str(key_id))
    return key


async def listing(
    session: AsyncSession,
    *,
    tenant: str | None,
    owner: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[SshKey]:
    """Keys ordered by id; only `tenant`'s and only `owner`'s when given."""
    query = select(SshKey).order_by(SshKey.id).limit(limit)
    if tenant is not None:
        query = query.where(SshKey.tenant_id == tenant)
    if owner is not None:
        query = query.where(SshKey.owner == owner)
    if after is not None:
        query = query.where(SshKey.id > after)
    return (await session.scalars(query)).all()


async def rename(session: AsyncSession, key: SshKey, name: str) -> SshKey:
    try:
        async with session.begin_nested():
            key.name = name
            await session.flush()
    except IntegrityError as exc:
        raise SshKeyConflict("the tenant already has an SSH key with this name") from exc
    return key


async def remove(session: AsyncSession, key_id: uuid.UUID) -> None:
    await session.execute(delete(SshKey).where(SshKey.id == key_id))


async def for_node(session: AsyncSession, node_id: str) -> list[str]:
    """The public keys of the tenant holding the node (none for a free node), oldest first:
    what its boots put in the user-data."""
    query = (
        select(SshKey.public_key)
        .join(Node, Node.tenant_id == SshKey.tenant_id)
        .where(Node.id == node_id)
        .order_by(SshKey.created_at, SshKey.id)
    )
    return list(await session.scalars(query))
