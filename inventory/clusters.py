"""Cluster records and the allocation of nodes to them: within the tenant's quota, of the GPU
model asked for, preferring nodes that share a leaf switch and an InfiniBand subnet.

Race-free in PostgreSQL, without in-memory locks: a tenant's admissions queue on its row
(`FOR UPDATE`), so its quota is checked against settled usage, and allocations of one GPU model
queue on a transaction-level advisory lock, so two requests racing for the last nodes are
served one after the other: the first gets them, the second finds them gone and is refused at
once (taking nodes row by row instead could leave both short). The chosen rows are locked too,
against any other writer of nodes.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events, tenants
from inventory.errors import InventoryError
from inventory.models import Cluster, IbPort, Nic, NicLink, Node, Tenant
from inventory.states import NodeState


class ClusterNotFound(InventoryError):
    pass


class ClusterConflict(InventoryError):
    pass


class QuotaExceeded(InventoryError):
    pass


class InsufficientCapacity(InventoryError):
    pass


@dataclass(frozen=True)
class Candidate:
    """A free node and where it sits (None: not cabled)."""

    node_id: str
    gpus: int
    leaf: str | None
    ib_subnet: str | None


def rank(candidates: Sequence[Candidate], count: int) -> list[Candidate]:
    """Every candidate, best first: the nodes of one (leaf, IB subnet) group that can hold
    `count` alone (the smallest such group, to keep big groups whole for big requests), else
    the biggest groups first. Within a group, by node id (stable)."""
    groups: dict[tuple[str | None, str | None], list[Candidate]] = defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: c.node_id):
        groups[(candidate.leaf, candidate.ib_subnet)].append(candidate)

    def preference(key: tuple[str | None, str | None]) -> tuple[int, int, str]:
        size = len(groups[key])
        fits = size >= count
        # Fitting groups first, smallest first; then the rest, biggest first.
        return (0 if fits else 1, size if fits else -size, str(key))

    return [c for key in sorted(groups, key=preference) for c in groups[key]]


async def _candidates(session: AsyncSession, gpu_model: str) -> list[Candidate]:
    leaf = (
        select(NicLink.switch_id)
        .join(Nic, Nic.mac == NicLink.mac)
        .where(Nic.node_id == Node.id)
        .order_by(NicLink.switch_id)
        .limit(1)
        .scalar_subquery()
    )
    ib_subnet = (
        select(IbPort.subnet)
        .where(IbPort.node_id == Node.id)
        .order_by(IbPort.subnet)
        .limit(1)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Node.id, Node.gpu_count, leaf, ib_subnet).where(
            *_free(), Node.gpu_model == gpu_model
        )
    )
    return [Candidate(node_id, gpus, sw, ib) for node_id, gpus, sw, ib in rows.all()]


def _free() -> tuple[object, ...]:
    return (
        Node.state == NodeState.AVAILABLE.value,
        Node.tenant_id.is_(None),
        Node.cluster_id.is_(None),
    )


async def allocate(session: AsyncSession, cluster: Cluster, count: int) -> list[str]:
    """Take `count` free nodes of the cluster's GPU model for it, within its tenant's quota;
    nothing is taken when it cannot have them all. Call inside the transaction that commits
    the result."""
    tenant = await session.get(Tenant, cluster.tenant_id, with_for_update=True)
    if tenant is None:
        raise tenants.TenantNotFound(cluster.tenant_id)
    usage = await tenants.usage(session, tenant.id)
    if usage.nodes + count > tenant.quota_nodes:
        raise QuotaExceeded(
            f"tenant {tenant.id} holds {usage.nodes} of its {tenant.quota_nodes} nodes;"
            f" {count} more would exceed the quota"
        )
    key = func.hashtext(literal(f"allocate:{cluster.gpu_model}"))
    await session.execute(select(func.pg_advisory_xact_lock(key)))
    taken: list[Candidate] = []
    ranked = rank(await _candidates(session, cluster.gpu_model), count)
    while len(taken) < count and ranked:  # a node may have changed since it was read
        wanted, ranked = ranked[: count - len(taken)], ranked[count - len(taken) :]
        still_free = set(
            (
                await session.scalars(
                    select(Node.id)
                    .where(Node.id.in_([c.node_id for c in wanted]), *_free())
                    .order_by(Node.id)
                    .with_for_update()
                )
            ).all()
        )
        taken += [c for c in wanted if c.node_id in still_free]
    if len(taken) < count:
        raise InsufficientCapacity(
            f"{len(taken)} free nodes with GPU model {cluster.gpu_model!r}; {count} needed"
        )
    gpus = sum(c.gpus for c in taken)
    if usage.gpus + gpus > tenant.quota_gpus:
        raise QuotaExceeded(
            f"tenant {tenant.id} holds {usage.gpus} of its {tenant.quota_gpus} GPUs;"
            f" {gpus} more would exceed the quota"
        )
    ids = [c.node_id for c in taken]
    await session.execute(
        update(Node).where(Node.id.in_(ids)).values(tenant_id=tenant.id, cluster_id=cluster.id)
    )
    return ids


async def create(session: AsyncSession, cluster: Cluster) -> list[str]:
    """Admit a cluster: its record and all its nodes, or nothing (raises)."""
    try:
        async with session.begin_nested():
            session.add(cluster)
            await session.flush()
    except IntegrityError as exc:
        raise ClusterConflict(f"tenant {cluster.tenant_id} has a cluster {cluster.name!r}") from exc
    nodes = await allocate(session, cluster, cluster.node_count)
    _event(session, cluster, "created")
    return nodes


async def get(session: AsyncSession, cluster_id: uuid.UUID) -> Cluster:
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None:
        raise ClusterNotFound(str(cluster_id))
    return cluster


async def nodes_of(session: AsyncSession, cluster_id: uuid.UUID) -> list[str]:
    query = select(Node.id).where(Node.cluster_id == cluster_id).order_by(Node.id)
    return list((await session.scalars(query)).all())


async def give_back(session: AsyncSession, cluster_id: uuid.UUID, node_id: str) -> None:
    """The node leaves the cluster (its tenant state is cleared by its release)."""
    await session.execute(
        update(Node)
        .where(Node.id == node_id, Node.cluster_id == cluster_id)
        .values(cluster_id=None)
    )


def _event(session: AsyncSession, cluster: Cluster, reason: str) -> None:
    events.record(
        session, kind="cluster", resource_id=str(cluster.id), tenant_id=cluster.tenant_id,
        to_state=cluster.state, reason=reason,
    )  # fmt: skip
