"""Allocation pools: VLANs, L2 and L3 VNIs, VRF tables, tenant subnets and InfiniBand PKeys.

A value is a row of `allocations` whose primary key (pool, scope, value) makes it impossible to
hand out twice, even across API replicas and workers. Allocation takes a transaction-scoped
advisory lock per (pool, scope), so concurrent allocators queue in PostgreSQL instead of
colliding and retrying; the lowest free value is taken. Every transaction takes the pool
locks in one order (subnet, l2vni, l3vni, vrf_table, pkey, vlan), so none deadlocks another.
Values are held until the network is deleted (its rows cascade), so nothing is handed out
while in use.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from inventory import locks
from inventory.errors import InventoryError
from inventory.models import Allocation

FABRIC = "fabric"


class PoolExhausted(InventoryError):
    def __init__(self, pool: str, scope: str) -> None:
        super().__init__(f"no free value left in pool {pool!r} ({scope})")
        self.pool = pool


class ValueTaken(InventoryError):
    pass


@dataclass(frozen=True)
class Pool:
    name: str
    first: int
    last: int


def pools(settings: Settings) -> dict[str, Pool]:
    supernet = ipaddress.ip_network(settings.tenant_supernet)
    blocks = 2 ** (settings.tenant_prefix_length - supernet.prefixlen)
    ranges = {
        "vlan": settings.pool_vlan,
        "l2vni": settings.pool_l2vni,
        "l3vni": settings.pool_l3vni,
        "vrf_table": settings.pool_vrf_table,
        "pkey": settings.pool_pkey,
        "subnet": (0, blocks - 1),  # block index in the supernet
    }
    return {name: Pool(name, first, last) for name, (first, last) in ranges.items()}


def subnet_of_block(settings: Settings, block: int) -> str:
    """The `block`-th subnet of the tenant prefix length in the tenant supernet."""
    supernet = ipaddress.ip_network(settings.tenant_supernet)
    size = 2 ** (supernet.max_prefixlen - settings.tenant_prefix_length)
    first = int(supernet.network_address) + block * size
    return str(ipaddress.ip_network((first, settings.tenant_prefix_length)))


def blocks_overlapping(settings: Settings, cidrs: Sequence[str]) -> list[int]:
    """The supernet blocks that overlap any of `cidrs` (a tenant's own explicit subnets)."""
    supernet = ipaddress.ip_network(settings.tenant_supernet)
    size = 2 ** (supernet.max_prefixlen - settings.tenant_prefix_length)
    blocks: set[int] = set()
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        if not network.overlaps(supernet):
            continue
        first = max(int(network.network_address), int(supernet.network_address))
        last = min(int(network.broadcast_address), int(supernet.broadcast_address))
        base = int(supernet.network_address)
        blocks.update(range((first - base) // size, (last - base) // size + 1))
    return sorted(blocks)


async def _lock(session: AsyncSession, pool: str, scope: str) -> None:
    await locks.hold(session, f"pool:{pool}:{scope}")


async def allocate(
    session: AsyncSession,
    pool: Pool,
    network_id: uuid.UUID,
    *,
    scope: str = FABRIC,
    purpose: str = "",
    exclude: Sequence[int] = (),
) -> int:
    """The lowest free value of `pool` in `scope` (not in `exclude`), now held by
    `network_id`."""
    await _lock(session, pool.name, scope)
    free = await session.scalar(
        text(
            "SELECT v FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS v"
            " WHERE NOT EXISTS (SELECT 1 FROM allocations a"
            " WHERE a.pool = :pool AND a.scope = :scope AND a.value = v)"
            " AND v <> ALL(CAST(:exclude AS bigint[]))"
            " ORDER BY v LIMIT 1"
        ),
        {
            "first": pool.first,
            "last": pool.last,
            "pool": pool.name,
            "scope": scope,
            "exclude": list(exclude),
        },
    )
    if free is None:
        raise PoolExhausted(pool.name, scope)
    session.add(
        Allocation(pool=pool.name, scope=scope, value=free, network_id=network_id, purpose=purpose)
    )
    await session.flush()
    return int(free)


async def reserve(
    session: AsyncSession,
    pool: Pool,
    value: int,
    network_id: uuid.UUID,
    *,
    scope: str = FABRIC,
    purpose: str = "",
) -> None:
    """Hold a chosen value (the provisioning network's); ValueTaken if another holds it."""
    await _lock(session, pool.name, scope)
    held = await session.scalar(
        insert(Allocation)
        .values(pool=pool.name, scope=scope, value=value, network_id=network_id, purpose=purpose)
        .on_conflict_do_nothing()
        .returning(Allocation.network_id)
    )
    if held is None:
        owner = await session.scalar(
            select(Allocation.network_id).where(
                Allocation.pool == pool.name, Allocation.scope == scope, Allocation.value == value
            )
        )
        if owner != network_id:
            raise ValueTaken(f"{pool.name} {value} ({scope}) is held by network {owner}")


async def held_by(session: AsyncSession, network_id: uuid.UUID) -> Sequence[Allocation]:
    query = select(Allocation).where(Allocation.network_id == network_id)
    return (await session.scalars(query.order_by(Allocation.pool, Allocation.value))).all()


async def release_all(session: AsyncSession, network_id: uuid.UUID) -> None:
    await session.execute(delete(Allocation).where(Allocation.network_id == network_id))
