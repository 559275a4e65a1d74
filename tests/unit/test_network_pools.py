"""Network pools on a real PostgreSQL: concurrent creates never share a value, overlapping
CIDRs of one tenant are refused (other tenants may reuse them), an exhausted pool says so, and
deleting a network returns every value."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from inventory import fabric, locks, networks, pools, tenants
from inventory.models import Allocation, Network, Tenant
from tests.db import migrated_sessions

SETTINGS = Settings(tenant_supernet="10.128.0.0/16", tenant_prefix_length=24)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_pools", pool_size=20) as factory:
        async with factory.begin() as session:
            for tenant_id in ("acme", "globex"):
                await tenants.create(session, Tenant(id=tenant_id, display_name=tenant_id))
        yield factory


async def create(
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    name: str,
    cidr: str | None = None,
    settings: Settings = SETTINGS,
) -> Network:
    async with sessions.begin() as session:
        return await networks.create(
            session, settings, networks.NewNetwork(tenant, "ann", name, cidr)
        )


async def test_fifty_concurrent_creates_never_share_a_value(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    made = await asyncio.gather(
        *(create(sessions, ("acme", "globex")[i % 2], f"n{i}") for i in range(50))
    )
    for field in ("vlan", "l3vlan", "l2vni", "l3vni", "vrf_table", "pkey", "cidr"):
        values = [str(getattr(n, field)) for n in made]
        assert len(set(values)) == 50, field
    vlans = {n.vlan for n in made} | {n.l3vlan for n in made}
    assert len(vlans) == 100  # L2 and L3 VLANs come from one space
    async with sessions() as session:
        held = await session.scalar(select(func.count()).select_from(Allocation))
    assert held == 50 * 7


async def test_cidrs_overlap_only_across_tenants(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await create(sessions, "acme", "a-lan", "192.168.0.0/24")
    await create(sessions, "globex", "g-lan", "192.168.0.0/24")  # another tenant: allowed
    with pytest.raises(networks.CidrOverlap):
        await create(sessions, "acme", "a-wide", "192.168.0.0/16")
    with pytest.raises(networks.NetworkConflict):
        await create(sessions, "acme", "a-lan", "172.16.0.0/24")


async def test_delete_returns_every_value_and_an_exhausted_pool_says_so(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tiny = SETTINGS.model_copy(update={"pool_pkey": (0x0101, 0x0101)})
    async with sessions.begin() as session:  # the other tests' networks hold other PKeys
        await session.execute(
            Allocation.__table__.delete().where(
                Allocation.pool == "pkey", Allocation.value == 0x0101
            )
        )
    first = await create(sessions, "acme", "only-one", settings=tiny)
    assert first.pkey == 0x0101
    with pytest.raises(pools.PoolExhausted) as exhausted:
        await create(sessions, "acme", "one-too-many", settings=tiny)
    assert exhausted.value.pool == "pkey"
    async with sessions.begin() as session:
        with pytest.raises(networks.NetworkConflict, match="creating"):
            await networks.begin_delete(session, first.id)  # its create workflow owns it
        await networks.set_state(session, first.id, "ready", allowed_from=["creating"])
        await networks.begin_delete(session, first.id)
        await networks.remove(session, first.id)
        assert not await pools.held_by(session, first.id)
    again = await create(sessions, "acme", "one-too-many", settings=tiny)
    assert again.pkey == 0x0101 and again.l2vni == first.l2vni  # the freed values come back


async def test_per_switch_vlans_skip_the_provisioning_vlan(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    per_switch = SETTINGS.model_copy(update={"vlan_scope": "switch", "pool_vlan": (10, 20)})
    async with sessions.begin() as session:
        provisioning = await networks.ensure_provisioning(
            session, per_switch, vlan=10, vni=99_999, cidr="10.255.0.0/24"
        )
        again = await networks.ensure_provisioning(
            session, per_switch, vlan=10, vni=99_999, cidr="10.255.0.0/24"
        )
        assert again.id == provisioning.id
    network = await create(sessions, "acme", "per-switch", settings=per_switch)
    assert network.vlan is None
    async with sessions.begin() as session:
        leaf1 = await fabric.vlans_on(session, per_switch, network, "leaf1")
        leaf2 = await fabric.vlans_on(session, per_switch, network, "leaf2")
        assert await fabric.vlans_on(session, per_switch, network, "leaf1") == leaf1
    assert leaf1 == leaf2 == (11, 12)  # 10 is the provisioning VLAN; each leaf counts alone


async def test_an_allocated_subnet_never_overlaps_the_tenants_own_cidrs(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        held = set(
            await session.scalars(select(Allocation.value).where(Allocation.pool == "subnet"))
        )
    next_block = min(set(range(256)) - held)  # what the pool would hand out next
    mine = await create(
        sessions, "globex", "explicit", cidr=pools.subnet_of_block(SETTINGS, next_block)
    )
    allocated = await create(sessions, "globex", "allocated")
    assert not ipaddress.ip_network(str(allocated.cidr)).overlaps(
        ipaddress.ip_network(str(mine.cidr))
    )


@pytest.mark.parametrize(
    "cidr", ["0.0.0.0/0", "224.0.0.0/4", "127.0.0.0/8", "169.254.0.0/16", "8.8.8.0/24"]
)
async def test_a_tenant_cidr_outside_the_tenant_ranges_is_refused_holding_nothing(
    sessions: async_sessionmaker[AsyncSession], cidr: str
) -> None:
    async with sessions() as session:
        before = await session.scalar(select(func.count()).select_from(Allocation))
    with pytest.raises(networks.CidrNotAllowed, match=r"10\.0\.0\.0/8, 172\.16\.0\.0/12"):
        await create(sessions, "acme", "outside", cidr)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Allocation)) == before
        named = select(Network.id).where(Network.tenant_id == "acme", Network.name == "outside")
        assert await session.scalar(named) is None


async def test_the_tenant_rule_does_not_bind_the_provisioning_network(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The provisioning network is the operator's: any subnet its fabric uses, here one outside
    every tenant range and wider than a tenant may ask for (rolled back afterwards)."""
    per_switch = SETTINGS.model_copy(update={"vlan_scope": "switch", "pool_vlan": (10, 20)})
    async with sessions() as session:
        provisioning = await networks.ensure_provisioning(
            session, per_switch, vlan=10, vni=99_999, cidr="198.18.0.0/15"
        )
        assert str(provisioning.cidr) == "198.18.0.0/15"
        await session.rollback()


def test_blocks_overlapping_a_cidr() -> None:
    settings = Settings(tenant_supernet="10.128.0.0/16", tenant_prefix_length=24)
    assert pools.blocks_overlapping(settings, ["10.128.4.0/23"]) == [4, 5]
    assert pools.blocks_overlapping(settings, ["10.128.7.128/25"]) == [7]
    assert pools.blocks_overlapping(settings, ["192.168.0.0/24"]) == []
    assert pools.blocks_overlapping(settings, ["10.0.0.0/8"]) == list(range(256))


async def test_setting_the_provisioning_network_beside_a_tenant_create_never_deadlocks(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A tenant create locks the l2vni pool before the vlan pool; so must the provisioning
    network, or each waits for the other (as it once did in CI). Rolled back afterwards."""
    fabric_wide = SETTINGS.model_copy(update={"vlan_scope": "fabric"})
    async with sessions.begin() as creating:
        await locks.hold(creating, "pool:l2vni:fabric")  # as networks.create's first pools
        async with sessions() as operator:
            setting = asyncio.create_task(
                networks.ensure_provisioning(
                    operator, fabric_wide, vlan=3999, vni=99_998, cidr="10.254.0.0/24"
                )
            )
            await asyncio.sleep(0.5)
            assert not setting.done()  # queued behind the create
            await asyncio.wait_for(locks.hold(creating, "pool:vlan:fabric"), 10)
            await creating.commit()
            provisioning = await asyncio.wait_for(setting, 10)
            assert provisioning.vlan == 3999
            await operator.rollback()
