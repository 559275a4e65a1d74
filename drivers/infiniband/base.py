"""The InfiniBand partition interface: a tenant's partition key (PKey) and its member ports.

Two backends share it: NVIDIA UFM's REST API (drivers.infiniband.ufm) and a subnet manager run
by OpenSM (drivers.infiniband.opensm: partitions.conf, then a reload). Every call is idempotent:
adding a member that is there, or removing one that is not, changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

PKEY_MIN, PKEY_MAX = 0x0001, 0x7FFE  # 0x7fff is the default partition; the top bit is membership


class Membership(StrEnum):
    FULL = "full"  # talks to every member
    LIMITED = "limited"  # talks to full members only


@dataclass(frozen=True, order=True)
class Member:
    guid: str  # port GUID, normalized by `normalize_guid`
    membership: Membership = Membership.FULL


@dataclass(frozen=True)
class Partition:
    pkey: int
    name: str
    members: frozenset[Member]


class PartitionError(Exception):
    """A partition call failed. `retryable`: whether trying again may succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class InvalidPartition(PartitionError):
    retryable = False


def normalize_guid(guid: str) -> str:
    """0x0002c90300a1b2c3, 0002:c903:00a1:b2c3 or 0002C90300A1B2C3 -> "0x0002c90300a1b2c3"."""
    digits = guid.lower().removeprefix("0x").replace(":", "")
    if len(digits) != 16 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidPartition(f"{guid!r} is not a 64-bit port GUID")
    return "0x" + digits


def check_pkey(pkey: int) -> int:
    if not PKEY_MIN <= pkey <= PKEY_MAX:
        raise InvalidPartition(f"PKey {pkey:#06x} is outside {PKEY_MIN:#06x}-{PKEY_MAX:#06x}")
    return pkey


class PartitionManager(Protocol):
    async def partitions(self) -> Mapping[int, Partition]:
        """Every partition the backend manages, by PKey."""
        ...

    async def ensure_pkey(self, pkey: int, name: str) -> None: ...

    async def add_members(self, pkey: int, members: Collection[Member]) -> None:
        """Add ports (or change their membership); the PKey must exist."""
        ...

    async def remove_members(self, pkey: int, guids: Collection[str]) -> None: ...

    async def remove_pkey(self, pkey: int) -> None: ...

    async def close(self) -> None: ...
