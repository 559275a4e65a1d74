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

import ipaddress
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events, locks, tenants
from inventory.errors import InventoryError
from inventory.models import Cluster, ClusterMember, IbPort, Network, Nic, NicLink, Node, Tenant
from inventory.states import CLUSTER_TRANSITIONS, ClusterState, NodeState, may_start_from

# Member addresses start at the network's 10th host: the first ones stay free for the gateway
# and the tenant's own services.
FIRST_MEMBER_HOST = 10


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
    if tenant is None or tenant.state == "deleted":
        raise tenants.TenantNotFound(cluster.tenant_id)
    usage = await tenants.usage(session, tenant.id)
    if usage.nodes + count > tenant.quota_nodes:
        raise QuotaExceeded(
            f"tenant {tenant.id} holds {usage.nodes} of its {tenant.quota_nodes} nodes;"
            f" {count} more would exceed the quota"
        )
    await locks.hold(session, f"allocate:{cluster.gpu_model}")
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
    """Admit a cluster (its network already set): its record and all its nodes with their
    roles and addresses, or nothing (raises)."""
    try:
        async with session.begin_nested():
            session.add(cluster)
            await session.flush()
    except IntegrityError as exc:
        raise ClusterConflict(f"tenant {cluster.tenant_id} has a cluster {cluster.name!r}") from exc
    nodes = await allocate(session, cluster, cluster.node_count)
    await _add_members(session, cluster, nodes)
    _event(session, cluster, "created")
    return nodes


def hostname_for(node_id: str) -> str:
    """The node's hostname in its cluster (the Slurm NodeName): a DNS label from its id."""
    label = re.sub(r"[^a-z0-9-]+", "-", node_id.lower()).strip("-")[:40].strip("-")
    return label or "node"


def _addresses(network: Network, taken: set[str]) -> Iterator[str]:
    subnet = ipaddress.ip_network(str(network.cidr))
    for index, host in enumerate(subnet.hosts(), start=1):
        if index >= FIRST_MEMBER_HOST and str(host) not in taken:
            yield f"{host}/{subnet.prefixlen}"


async def _add_members(
    session: AsyncSession,
    cluster: Cluster,
    node_ids: Sequence[str],
    *,
    address: str | None = None,
    role: str | None = None,
    replaces: str | None = None,
) -> None:
    """Members for newly allocated nodes: the first node of a cluster without a controller
    becomes it; each takes the lowest free address of the network (or the given one)."""
    network = await session.get_one(Network, cluster.network_id)
    held = await session.scalars(
        select(ClusterMember.address).where(ClusterMember.network_id == network.id)
    )
    taken = {str(ipaddress.ip_interface(str(a)).ip) for a in held.all()}
    has_controller = bool(
        await session.scalar(
            select(func.count()).where(
                ClusterMember.cluster_id == cluster.id, ClusterMember.role == "controller"
            )
        )
    )
    free = _addresses(network, taken)
    for node_id in sorted(node_ids):
        member_role = role or ("compute" if has_controller else "controller")
        has_controller = True
        try:
            member_address = address or next(free)
        except StopIteration:
            raise InsufficientCapacity(
                f"network {network.name} ({network.cidr}) has no free address left"
            ) from None
        session.add(
            ClusterMember(
                node_id=node_id, cluster_id=cluster.id, network_id=network.id,
                hostname=hostname_for(node_id), role=member_role, address=member_address,
                replaces=replaces,
            )
        )  # fmt: skip
    await session.flush()


async def grow(session: AsyncSession, cluster_id: uuid.UUID, count: int) -> list[str]:
    """Scale up: `count` more nodes (all or none) as compute members."""
    cluster = await get(session, cluster_id, for_update=True)
    added = await allocate(session, cluster, count)
    await _add_members(session, cluster, added)
    cluster.node_count += count
    return added


async def replace(session: AsyncSession, cluster_id: uuid.UUID, failed: str) -> str:
    """A node that failed provisioning leaves the cluster (it stays `failed`, held by no
    tenant, for an operator); a free node takes its role and address. Raises
    InsufficientCapacity (or QuotaExceeded) when there is none."""
    cluster = await get(session, cluster_id, for_update=True)
    member = await session.get(ClusterMember, failed)
    if member is None or member.cluster_id != cluster_id:
        raise ClusterConflict(f"{failed} is not a member of cluster {cluster.name}")
    role, address = member.role, str(member.address)
    await session.delete(member)
    await session.execute(
        update(Node).where(Node.id == failed).values(cluster_id=None, tenant_id=None)
    )
    await session.flush()
    (replacement,) = await allocate(session, cluster, 1)
    await _add_members(session, cluster, [replacement], address=address, role=role, replaces=failed)
    _event(session, cluster, f"{failed} failed provisioning; {replacement} replaces it")
    return replacement


async def get(session: AsyncSession, cluster_id: uuid.UUID, *, for_update: bool = False) -> Cluster:
    cluster = await session.get(Cluster, cluster_id, with_for_update=for_update)
    if cluster is None:
        raise ClusterNotFound(str(cluster_id))
    return cluster


async def members(session: AsyncSession, cluster_id: uuid.UUID) -> list[ClusterMember]:
    query = (
        select(ClusterMember)
        .where(ClusterMember.cluster_id == cluster_id)
        .order_by(ClusterMember.role.desc(), ClusterMember.node_id)  # the controller first
    )
    return list((await session.scalars(query)).all())


async def rebooting_members(session: AsyncSession, cluster_id: uuid.UUID) -> list[str]:
    """Its nodes an operator's RebootNode holds (no other node operation may start on them)."""
    query = select(Node.id).where(Node.cluster_id == cluster_id, Node.state == NodeState.REBOOTING)
    return list((await session.scalars(query.order_by(Node.id))).all())


async def membership(session: AsyncSession, node_id: str) -> ClusterMember | None:
    return await session.get(ClusterMember, node_id)


async def forget(session: AsyncSession, cluster_id: uuid.UUID, node_id: str) -> None:
    """The released node leaves the cluster for good. Idempotent."""
    await session.execute(
        delete(ClusterMember).where(
            ClusterMember.node_id == node_id, ClusterMember.cluster_id == cluster_id
        )
    )
    await session.execute(
        update(Node)
        .where(Node.id == node_id, Node.cluster_id == cluster_id)
        .values(cluster_id=None)
    )


async def set_member_state(
    session: AsyncSession, cluster_id: uuid.UUID, node_ids: Sequence[str], state: str
) -> None:
    await session.execute(
        update(ClusterMember)
        .where(ClusterMember.cluster_id == cluster_id, ClusterMember.node_id.in_(node_ids))
        .values(state=state)
    )


async def set_state(
    session: AsyncSession,
    cluster_id: uuid.UUID,
    to_state: str,
    allowed_from: Sequence[str] | None = None,
    reason: str | None = None,
) -> Cluster:
    """A guarded state change (the cluster row locked); the same state again is a no-op. Only
    a change CLUSTER_TRANSITIONS has, from one of `allowed_from` when the caller names them
    (None: any state the table allows); else ClusterConflict."""
    target = ClusterState(to_state)
    cluster = await get(session, cluster_id, for_update=True)
    if cluster.state == target:
        return cluster
    starts = may_start_from(CLUSTER_TRANSITIONS, target, allowed_from)
    if cluster.state not in starts:
        # The target itself is named by callers that only confirm it (a no-op, above).
        named = [*starts, target] if allowed_from and target in allowed_from else starts
        raise ClusterConflict(
            f"cluster {cluster.name} is {cluster.state}; {target} needs one of: {', '.join(named)}"
        )
    before, cluster.state = cluster.state, target.value
    cluster.last_error = reason if target == ClusterState.FAILED else None
    events.record(
        session, kind="cluster", resource_id=str(cluster.id), tenant_id=cluster.tenant_id,
        owner=cluster.owner, from_state=before, to_state=target.value, reason=reason,
    )  # fmt: skip
    return cluster


async def record_report(
    session: AsyncSession, cluster_id: uuid.UUID, report: dict[str, Any]
) -> dict[str, Any]:
    """Keep the head node's report; answer with what the cluster should be (its members'
    hostnames, and the test job generation asked for)."""
    cluster = await get(session, cluster_id)
    cluster.report, cluster.reported_at = report, datetime.now(UTC)
    return await desired(session, cluster)


async def desired(session: AsyncSession, cluster: Cluster) -> dict[str, Any]:
    rows = await session.execute(
        select(ClusterMember.hostname, ClusterMember.state).where(
            ClusterMember.cluster_id == cluster.id
        )
    )
    keep = sorted(name for name, state in rows.all() if state != "removing")
    return {"members": keep, "verify_generation": cluster.verify_generation}


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
        owner=cluster.owner, to_state=cluster.state, reason=reason,
    )  # fmt: skip


async def listing(
    session: AsyncSession,
    *,
    tenant: str | None,
    owner: str | None,
    state: ClusterState | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Cluster]:
    query = select(Cluster).order_by(Cluster.id).limit(limit)
    if tenant is not None:
        query = query.where(Cluster.tenant_id == tenant)
    if owner is not None:
        query = query.where(Cluster.owner == owner)
    if state is not None:
        query = query.where(Cluster.state == state)
    if after is not None:
        query = query.where(Cluster.id > after)
    return (await session.scalars(query)).all()


async def members_by_cluster(
    session: AsyncSession, cluster_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ClusterMember]]:
    found: dict[uuid.UUID, list[ClusterMember]] = {c: [] for c in cluster_ids}
    query = (
        select(ClusterMember)
        .where(ClusterMember.cluster_id.in_(cluster_ids))
        .order_by(ClusterMember.role.desc(), ClusterMember.node_id)
    )
    for member in (await session.scalars(query)).all():
        found[member.cluster_id].append(member)
    return found


async def storage_of(session: AsyncSession, node_id: str) -> list[dict[str, Any]]:
    """The storage mounts of the node's cluster ([] when it is in none)."""
    mounts = await session.scalar(
        select(Cluster.storage_mounts)
        .join(ClusterMember, ClusterMember.cluster_id == Cluster.id)
        .where(ClusterMember.node_id == node_id)
    )
    return list(mounts or [])
