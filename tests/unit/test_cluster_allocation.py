"""Cluster admission on a real PostgreSQL: nodes of the asked GPU model within quota, all or
nothing; two tenants racing for the last nodes: exactly one wins; the quota is checked before
anything is taken; nodes that share a leaf and an IB subnet are preferred."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inventory import clusters, nodes, tenants
from inventory.errors import NodeConflict
from inventory.models import (
    Cluster,
    ClusterMember,
    Event,
    IbPort,
    Network,
    Nic,
    NicLink,
    Node,
    Switch,
    Tenant,
)
from tests.db import migrated_sessions

# Each tenant's network (the same subnet: members' addresses are per network).
NETWORKS = {"acme": uuid.uuid4(), "globex": uuid.uuid4()}
# node -> (GPU model, leaf)
FLEET = {
    "n01": ("h100", "leaf1"), "n02": ("h100", "leaf1"), "n03": ("h100", "leaf2"),
    "n04": ("h100", "leaf2"), "n05": ("h100", "leaf2"), "n06": ("a100", "leaf1"),
}  # fmt: skip


async def _fresh_fleet(session: AsyncSession) -> None:
    """Two leaves, the FLEET nodes cabled to them, two tenants with a network each."""
    for table in (NicLink, IbPort, Nic):
        await session.execute(delete(table))
    await session.execute(delete(ClusterMember))
    await session.execute(update(Node).values(cluster_id=None, tenant_id=None))
    await session.execute(delete(Cluster))
    await session.execute(delete(Network))
    await session.execute(delete(Node))
    await session.execute(delete(Switch))
    await session.execute(delete(Tenant))
    for leaf in ("leaf1", "leaf2"):
        session.add(Switch(id=leaf, role="leaf", nos="linux-frr", mgmt_address=leaf,
                           username="u", password="p", asn=65000))  # fmt: skip
    for index, (node_id, (gpu, leaf)) in enumerate(FLEET.items()):
        mac = f"02:00:00:00:00:{index:02x}"
        session.add(Node(id=node_id, vendor="v", model="m", gpu_model=gpu, gpu_count=8,
                         bmc_protocol="ipmi", bmc_address="x", bmc_username="u",
                         bmc_password="p"))  # fmt: skip
        await session.flush()
        session.add(Nic(mac=mac, node_id=node_id))
        await session.flush()
        session.add(NicLink(mac=mac, switch_id=leaf, port=f"swp{index}"))
        session.add(IbPort(guid=f"0x{index:016x}", node_id=node_id))
    for tenant_id in ("acme", "globex"):
        await tenants.create(session, Tenant(id=tenant_id, display_name=tenant_id,
                                             quota_nodes=10, quota_gpus=80))  # fmt: skip
        session.add(Network(id=NETWORKS[tenant_id], tenant_id=tenant_id, name="lan",
                            cidr="10.50.0.0/24", l2vni=NETWORKS[tenant_id].int % 10**6,
                            state="ready"))  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_cluster_alloc", pool_size=10) as factory:
        async with factory.begin() as session:  # a fresh fleet per test
            await _fresh_fleet(session)
        yield factory


def cluster(tenant: str, count: int, gpu: str = "h100", name: str = "c") -> Cluster:
    return Cluster(id=uuid.uuid4(), tenant_id=tenant, name=name, kind="slurm",
                   node_count=count, gpu_model=gpu, image="lab-sim",
                   network_id=NETWORKS[tenant])  # fmt: skip


async def admit(sessions: async_sessionmaker[AsyncSession], wanted: Cluster) -> list[str]:
    async with sessions.begin() as session:
        return await clusters.create(session, wanted)


async def holders(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str | None]:
    async with sessions() as session:
        rows = await session.execute(select(Node.id, Node.tenant_id).order_by(Node.id))
        return dict(rows.all())  # type: ignore[arg-type]


async def test_a_cluster_gets_nodes_of_its_gpu_model_on_one_leaf_when_it_fits(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await admit(sessions, cluster("acme", 2)) == ["n01", "n02"]  # leaf1: fits exactly
    assert await admit(sessions, cluster("acme", 3, name="d")) == ["n03", "n04", "n05"]
    assert await admit(sessions, cluster("globex", 1, gpu="a100")) == ["n06"]
    assert set((await holders(sessions)).values()) == {"acme", "globex"}
    async with sessions() as session:
        members = (await session.execute(
            select(ClusterMember.node_id, ClusterMember.role, ClusterMember.address)
            .order_by(ClusterMember.node_id)
        )).all()  # fmt: skip
    # One controller per cluster; addresses from the 10th host up, unique per network.
    assert [(n, r, str(a)) for n, r, a in members] == [
        ("n01", "controller", "10.50.0.10/24"), ("n02", "compute", "10.50.0.11/24"),
        ("n03", "controller", "10.50.0.12/24"), ("n04", "compute", "10.50.0.13/24"),
        ("n05", "compute", "10.50.0.14/24"), ("n06", "controller", "10.50.0.10/24"),
    ]  # fmt: skip


async def test_a_failed_node_is_replaced_in_its_role_and_address(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    wanted = cluster("acme", 2)
    assert await admit(sessions, wanted) == ["n01", "n02"]
    async with sessions.begin() as session:  # its provisioning failed
        await session.execute(update(Node).where(Node.id == "n01").values(state="failed"))
        stand_in = await clusters.replace(session, wanted.id, "n01")
    assert stand_in == "n03"
    async with sessions.begin() as session:
        member = await session.get_one(ClusterMember, stand_in)
        assert (member.role, str(member.address), member.replaces) == (
            "controller", "10.50.0.10/24", "n01",
        )  # fmt: skip
        failed = await session.get_one(Node, "n01")
        assert (failed.tenant_id, failed.cluster_id) == (None, None)
        assert await session.get(ClusterMember, "n01") is None
        # No free node left: the next failure finds no replacement.
        await session.execute(update(Node).where(Node.cluster_id.is_(None)).values(state="failed"))
        await session.execute(update(Node).where(Node.id == "n02").values(state="failed"))
    with pytest.raises(clusters.InsufficientCapacity):
        async with sessions.begin() as session:
            await clusters.replace(session, wanted.id, "n02")


async def test_all_or_nothing_when_capacity_is_short(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(clusters.InsufficientCapacity, match="5 free nodes"):
        await admit(sessions, cluster("acme", 6))
    assert set((await holders(sessions)).values()) == {None}
    async with sessions() as session:
        assert (await session.scalars(select(Cluster))).all() == []


async def test_the_quota_is_checked_before_anything_is_taken(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        await session.execute(update(Tenant).where(Tenant.id == "acme").values(quota_gpus=16))
    with pytest.raises(clusters.QuotaExceeded, match="GPUs"):
        await admit(sessions, cluster("acme", 3))  # 24 GPUs > 16
    async with sessions.begin() as session:
        await session.execute(update(Tenant).where(Tenant.id == "acme").values(quota_nodes=1))
    with pytest.raises(clusters.QuotaExceeded, match="nodes"):
        await admit(sessions, cluster("acme", 2))
    assert set((await holders(sessions)).values()) == {None}


async def test_two_tenants_racing_for_the_last_nodes_exactly_one_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for _ in range(5):  # several rounds: the race must hold every time
        async with sessions.begin() as session:
            await session.execute(delete(ClusterMember))
            await session.execute(update(Node).values(cluster_id=None, tenant_id=None))
            await session.execute(delete(Cluster))
        results = await asyncio.gather(
            admit(sessions, cluster("acme", 4)),
            admit(sessions, cluster("globex", 4)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, list)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], clusters.InsufficientCapacity)
        held = [n for n, t in (await holders(sessions)).items() if t is not None]
        assert sorted(held) == sorted(won[0])


async def test_a_duplicate_name_is_refused_per_tenant(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await admit(sessions, cluster("acme", 1, name="same"))
    with pytest.raises(clusters.ClusterConflict):
        await admit(sessions, cluster("acme", 1, name="same"))
    await admit(sessions, cluster("globex", 1, name="same"))  # another tenant may


def test_ranking_prefers_one_group_that_fits_then_the_biggest_groups() -> None:
    def c(node: str, leaf: str) -> clusters.Candidate:
        return clusters.Candidate(node, 8, leaf, "default")

    pool = [c("a1", "A"), c("a2", "A"), c("b1", "B"), c("b2", "B"), c("b3", "B"), c("z", "Z")]
    assert [x.node_id for x in clusters.rank(pool, 2)][:2] == ["a1", "a2"]  # smallest fit
    assert [x.node_id for x in clusters.rank(pool, 3)][:3] == ["b1", "b2", "b3"]
    assert [x.node_id for x in clusters.rank(pool, 5)][:5] == ["b1", "b2", "b3", "a1", "a2"]


async def test_a_node_in_maintenance_is_never_allocated_until_it_returns(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        since = await session.scalar(select(func.coalesce(func.max(Event.id), 0)))
        node = await nodes.enter_maintenance(session, "n01", reason="fan 3 failed")
        assert (node.state, node.maintenance_reason) == ("maintenance", "fan 3 failed")
        again = await nodes.enter_maintenance(session, "n01", reason="fan 3 replaced, burn-in")
        assert again.maintenance_reason == "fan 3 replaced, burn-in"
    assert sorted(await admit(sessions, cluster("acme", 4))) == ["n02", "n03", "n04", "n05"]
    with pytest.raises(clusters.InsufficientCapacity):  # only n01 has H100s left
        await admit(sessions, cluster("globex", 1))
    async with sessions.begin() as session:
        with pytest.raises(NodeConflict, match="n03' is available in cluster"):
            await nodes.enter_maintenance(session, "n03", reason="held by acme")
        with pytest.raises(NodeConflict, match="not in maintenance"):
            await nodes.leave_maintenance(session, "n06", reason="not in it")
        back = await nodes.leave_maintenance(session, "n01", reason="returned")
        assert (back.state, back.maintenance_reason) == ("available", None)
        moves = (await session.execute(
            select(Event.from_state, Event.to_state, Event.reason)
            .where(Event.resource_id == "n01", Event.id > since).order_by(Event.id)
        )).all()  # fmt: skip
    assert [tuple(m) for m in moves] == [
        ("available", "maintenance", "fan 3 failed"), ("maintenance", "available", "returned"),
    ]  # fmt: skip
    assert await admit(sessions, cluster("globex", 1)) == ["n01"]
