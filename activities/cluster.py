"""Cluster activities: the inventory side of CreateCluster, ScaleCluster and DeleteCluster
(admission, members and their replacement, the head node's reports, the cluster's state).

The nodes themselves are provisioned and released by the node workflows, the network by the
network workflows; these only keep the cluster's records. Each is one guarded transaction,
safe to run twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from inventory import clusters, events, networks
from inventory.errors import InventoryError
from inventory.models import Cluster, ClusterMember, Network

from .errors import bad_input, inventory_failure


@dataclass
class ClusterPlan:
    cluster_id: str
    image: str
    network_id: str
    network_owned: bool
    network_ready: bool
    joining: list[str] = field(default_factory=list)  # members still to provision
    members: list[str] = field(default_factory=list)  # every member


@dataclass
class ClusterNode:
    cluster_id: str
    node_id: str
    shrink: bool = False  # the cluster asks for one node fewer (a scale-up unwound)


@dataclass
class ClusterEnd:
    cluster_id: str
    reason: str | None = None
    deleting: bool = False  # the failure is DeleteCluster's


@dataclass
class MemberView:
    node_id: str
    hostname: str
    role: str
    state: str


@dataclass
class Removals:
    cluster_id: str
    count: int
    reported_after: str  # ISO time: choose by a report the head node sent after it


def _network_name(cluster: Cluster) -> str:
    return f"cluster-{cluster.name}"[:63]


class ClusterActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    async def _plan(self, session: AsyncSession, cluster: Cluster) -> ClusterPlan:
        """What the cluster holds; network_id is empty when its network is gone."""
        network = None
        if cluster.network_id is not None:
            network = await session.get(Network, cluster.network_id)
        members = await clusters.members(session, cluster.id)
        return ClusterPlan(
            cluster_id=str(cluster.id),
            image=cluster.image,
            network_id=str(network.id) if network else "",
            network_owned=cluster.network_owned,
            network_ready=network is not None and network.state == "ready",
            joining=[m.node_id for m in members if m.state == "joining"],
            members=[m.node_id for m in members],
        )

    @activity.defn(name="begin_cluster_create")
    async def begin_create(self, cluster_id: str) -> ClusterPlan:
        """`creating` again (an SRE retry after a failure): a network of its own is made anew
        if the unwinding deleted it, and the members it gave back are allocated again."""
        try:
            async with self._sessions.begin() as session:
                cluster = await clusters.set_state(
                    session, uuid.UUID(cluster_id), "creating", ("creating", "failed")
                )
                if cluster.network_id is None:
                    if not cluster.network_owned:
                        raise bad_input(
                            f"the network of cluster {cluster.name} was deleted", "NetworkGone"
                        )
                    new = networks.NewNetwork(
                        cluster.tenant_id, cluster.owner or "", _network_name(cluster), None
                    )
                    network = await networks.create(session, self._settings, new)
                    cluster.network_id = network.id
                missing = cluster.node_count - len(await clusters.members(session, cluster.id))
                if missing > 0:
                    await clusters.grow(session, cluster.id, missing)
                    cluster.node_count -= missing  # grow counts them as new; they are not
                return await self._plan(session, cluster)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="cluster_plan")
    async def plan(self, cluster_id: str) -> ClusterPlan:
        """What the cluster holds now (for unwinding); no network: network_id is empty."""
        async with self._sessions() as session:
            return await self._plan(session, await clusters.get(session, uuid.UUID(cluster_id)))

    @activity.defn(name="cluster_members")
    async def members(self, cluster_id: str) -> list[MemberView]:
        async with self._sessions() as session:
            found = await clusters.members(session, uuid.UUID(cluster_id))
            return [MemberView(m.node_id, m.hostname, m.role, m.state) for m in found]

    @activity.defn(name="begin_cluster_scale")
    async def begin_scale(self, cluster_id: str) -> ClusterPlan:
        try:
            async with self._sessions.begin() as session:
                cluster = await clusters.set_state(
                    session, uuid.UUID(cluster_id), "scaling", ("scaling",)
                )
                return await self._plan(session, cluster)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="begin_cluster_delete")
    async def begin_delete(self, cluster_id: str) -> ClusterPlan:
        try:
            async with self._sessions.begin() as session:
                cluster = await clusters.set_state(
                    session, uuid.UUID(cluster_id), "deleting", ("deleting", "ready", "failed")
                )
                return await self._plan(session, cluster)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="replace_cluster_member")
    async def replace_member(self, request: ClusterNode) -> str:
        """A free node takes the failed one's place (non-retryable failure when none is)."""
        try:
            async with self._sessions.begin() as session:
                member = await session.get(ClusterMember, request.node_id)
                if member is None:  # a retry: the replacement is the joining member it added
                    raise bad_input(f"{request.node_id} is no member", "NotAMember")
                return await clusters.replace(
                    session, uuid.UUID(request.cluster_id), member.node_id
                )
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="request_cluster_verification")
    async def request_verification(self, cluster_id: str) -> int:
        """Ask the head node for a test job across all members; the generation to wait for."""
        async with self._sessions.begin() as session:
            cluster = await clusters.get(session, uuid.UUID(cluster_id), for_update=True)
            cluster.verify_generation += 1
            return cluster.verify_generation

    @activity.defn(name="cluster_report")
    async def report(self, cluster_id: str) -> dict[str, Any] | None:
        """The head node's last report (reports that arrive later come as signals)."""
        async with self._sessions() as session:
            cluster = await clusters.get(session, uuid.UUID(cluster_id))
            return cluster.report

    @activity.defn(name="choose_cluster_removals")
    async def choose_removals(self, request: Removals) -> list[str]:
        """Mark `count` compute members `removing`, idle ones first by the last report (no job
        is killed on a node that could be spared), the newest hostnames first. A repeat
        returns the ones already chosen."""
        cluster_id = uuid.UUID(request.cluster_id)
        async with self._sessions.begin() as session:
            cluster = await clusters.get(session, cluster_id, for_update=True)
            members = await clusters.members(session, cluster_id)
            chosen = [m for m in members if m.state == "removing"]
            fresh = datetime.fromisoformat(request.reported_after)
            if len(chosen) < request.count and (
                cluster.reported_at is None or cluster.reported_at <= fresh
            ):  # retried until the head node has reported the jobs running now
                raise ApplicationError(
                    "waiting for a report of the head node newer than the scale request",
                    type="StaleReport",
                )
            states = {
                n.get("name"): n.get("state")
                for n in (cluster.report or {}).get("nodes", [])
                if isinstance(n, dict)
            }
            candidates = sorted(
                (m for m in members if m.role == "compute" and m.state == "member"),
                key=lambda m: (states.get(m.hostname) != "idle", _reverse(m.hostname)),
            )
            chosen += candidates[: max(0, request.count - len(chosen))]
            await clusters.set_member_state(
                session, cluster_id, [m.node_id for m in chosen], "removing"
            )
            return [m.node_id for m in chosen]

    @activity.defn(name="forget_cluster_member")
    async def forget_member(self, request: ClusterNode) -> None:
        async with self._sessions.begin() as session:
            cluster_id = uuid.UUID(request.cluster_id)
            was_member = await session.scalar(
                select(ClusterMember.node_id).where(
                    ClusterMember.node_id == request.node_id,
                    ClusterMember.cluster_id == cluster_id,
                )
            )
            await clusters.forget(session, cluster_id, request.node_id)
            if request.shrink and was_member:
                cluster = await clusters.get(session, cluster_id, for_update=True)
                cluster.node_count = max(1, cluster.node_count - 1)

    @activity.defn(name="finish_cluster_operation")
    async def finish(self, request: ClusterEnd) -> None:
        """Ready, with every member a member. A scale that failed says why (the cluster still
        runs); a cluster being deleted (cancelled creation) is not made ready."""
        try:
            async with self._sessions.begin() as session:
                cluster_id = uuid.UUID(request.cluster_id)
                await clusters.set_state(session, cluster_id, "ready", ("creating", "scaling"))
                members = [m.node_id for m in await clusters.members(session, cluster_id)]
                await clusters.set_member_state(session, cluster_id, members, "member")
                cluster = await clusters.get(session, cluster_id)
                cluster.node_count = len(members)  # a scale that failed keeps what it has
                cluster.last_error = request.reason
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="fail_cluster")
    async def fail(self, request: ClusterEnd) -> bool:
        """After unwinding: `failed` with the reason, or, when its deletion was asked (a
        creation cancelled by DELETE), gone. True when the record was deleted. A failed
        deletion (`deleting` set) stays failed for an SRE to retry."""
        async with self._sessions.begin() as session:
            cluster = await session.get(
                Cluster, uuid.UUID(request.cluster_id), with_for_update=True
            )
            if cluster is None:
                return True
            if cluster.state == "deleting" and not request.deleting:
                return await self._remove(session, cluster)
            await clusters.set_state(
                session, cluster.id, "failed", ("creating", "scaling", "deleting", "failed"),
                request.reason,
            )  # fmt: skip
            return False

    @activity.defn(name="begin_cluster_network_delete")
    async def begin_network_delete(self, network_id: str) -> bool:
        """Mark the cluster's own network for deletion (its nodes are released); False when
        it is gone already. A network whose creation never ran (the cluster failed first) is
        marked failed on the way: this cluster's workflow was its only creator."""
        try:
            async with self._sessions.begin() as session:
                network = await session.get(Network, uuid.UUID(network_id), with_for_update=True)
                if network is None:
                    return False
                if network.state == "creating":
                    await networks.set_state(
                        session, network.id, "failed", allowed_from=("creating",),
                        reason="its cluster failed before creating it",
                    )  # fmt: skip
                await networks.begin_delete(session, network.id)
                return True
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    @activity.defn(name="finish_cluster_delete")
    async def finish_delete(self, cluster_id: str) -> bool:
        async with self._sessions.begin() as session:
            cluster = await session.get(Cluster, uuid.UUID(cluster_id), with_for_update=True)
            return True if cluster is None else await self._remove(session, cluster)

    async def _remove(self, session: AsyncSession, cluster: Cluster) -> bool:
        left = await clusters.members(session, cluster.id)
        if left:
            raise bad_input(
                f"cluster {cluster.name} still holds {', '.join(m.node_id for m in left)}",
                "MembersLeft",
            )
        await session.execute(delete(Cluster).where(Cluster.id == cluster.id))
        events.record(
            session, kind="cluster", resource_id=str(cluster.id), tenant_id=cluster.tenant_id,
            owner=cluster.owner, from_state=cluster.state, to_state="deleted", reason="deleted",
        )  # fmt: skip
        return True


def _reverse(hostname: str) -> tuple[int, ...]:
    """Sort key: the highest hostname first."""
    return tuple(-ord(c) for c in hostname)
