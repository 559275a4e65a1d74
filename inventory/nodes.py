"""Node records: enrollment, lookup and guarded state changes.

Every state change is one UPDATE whose WHERE clause states the allowed current state (and the
operation that holds the node), so two workflows can never claim one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from inventory import discovery, events
from inventory.errors import NodeConflict, NodeNeedsCleaning, NodeNotFound
from inventory.models import Cluster, Event, Nic, Node
from inventory.states import (
    COMMISSION_FROM,
    MAINTENANCE_FROM,
    PROVISION_FROM,
    REBOOT_FROM,
    RELEASE_FROM,
    RESCUE_FROM,
    UNRESCUE_FROM,
    NodeState,
)

# The state a node is in while an operation holds it.
HELD_STATE = {
    "provision": NodeState.PROVISIONING,
    "release": NodeState.CLEANING,
    "reboot": NodeState.REBOOTING,
    "commission": NodeState.INSPECTING,
    "rescue": NodeState.RESCUING,
    "unrescue": NodeState.REBOOTING,  # back into its image
}


@dataclass
class NewNode:
    id: str
    vendor: str
    model: str
    macs: list[str]
    bmc_protocol: str
    bmc_address: str
    bmc_username: str
    bmc_password: str
    bmc_redfish_address: str | None = None
    gpu_vendor: str | None = None
    gpu_model: str | None = None
    gpu_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    agent_image: str | None = None
    console_address: str | None = None
    sku: str | None = None
    commission_by: str | None = None  # the workflow that commissions it at once (inspecting)


async def enroll(session: AsyncSession, new: NewNode) -> Node:
    node = Node(
        id=new.id,
        vendor=new.vendor,
        model=new.model,
        gpu_vendor=new.gpu_vendor,
        gpu_model=new.gpu_model,
        gpu_count=new.gpu_count,
        bmc_protocol=new.bmc_protocol,
        bmc_address=new.bmc_address,
        bmc_username=new.bmc_username,
        bmc_password=new.bmc_password,
        bmc_redfish_address=new.bmc_redfish_address,
        state=(NodeState.INSPECTING if new.commission_by else NodeState.AVAILABLE).value,
        operation="commission" if new.commission_by else None,
        workflow_id=new.commission_by,
        labels=new.labels,
        agent_image=new.agent_image,
        console_address=new.console_address,
        sku=new.sku,
        extra_kernel_args=[],
        nics=[Nic(mac=mac, position=i) for i, mac in enumerate(new.macs)],
    )
    try:
        async with session.begin_nested():  # a savepoint: the caller's transaction survives
            session.add(node)
            await session.flush()
    except IntegrityError as exc:
        taken = await session.scalar(select(Node.id).where(Node.id == new.id))
        if taken:
            raise NodeConflict(f"node {new.id!r} is already enrolled") from exc
        raise NodeConflict("a MAC address of this node belongs to another node") from exc
    events.record(session, kind="node", resource_id=new.id, to_state=node.state, reason="enrolled")
    await discovery.accept(session, new.macs, new.id)
    await session.flush()
    return node


async def get(session: AsyncSession, node_id: str) -> Node:
    node = await session.get(Node, node_id)
    if node is None:
        raise NodeNotFound(node_id)
    return node


@dataclass(frozen=True)
class BmcAccess:
    protocol: str
    address: str
    username: str
    password: str = field(repr=False)
    redfish_address: str | None


async def get_bmc_access(session: AsyncSession, node_id: str) -> BmcAccess:
    """The node's BMC address and credentials: one row, no ORM objects (a hot path)."""
    row = (
        await session.execute(
            select(
                Node.bmc_protocol,
                Node.bmc_address,
                Node.bmc_username,
                Node.bmc_password,
                Node.bmc_redfish_address,
            ).where(Node.id == node_id)
        )
    ).one_or_none()
    if row is None:
        raise NodeNotFound(node_id)
    return BmcAccess(*row)


async def find(session: AsyncSession, node_id: str) -> Node | None:
    """The node with its NICs (what the API shows), or None."""
    return await session.scalar(
        select(Node).where(Node.id == node_id).options(selectinload(Node.nics))
    )


async def list_nodes(
    session: AsyncSession,
    *,
    state: str | None = None,
    labels: dict[str, str] | None = None,
    limit: int = 1000,
    after: str | None = None,
    tenant: str | None = None,
    owner: str | None = None,
) -> Sequence[Node]:
    """`tenant`: only the nodes it holds; `owner`: only those of the clusters it owns."""
    query = select(Node).order_by(Node.id).limit(limit).options(selectinload(Node.nics))
    if tenant is not None:
        query = query.where(Node.tenant_id == tenant)
    if owner is not None:
        query = query.join(Cluster, Cluster.id == Node.cluster_id).where(Cluster.owner == owner)
    if state:
        query = query.where(Node.state == state)
    if labels:
        query = query.where(Node.labels.contains(labels))  # JSONB @>: has all of them
    if after:
        query = query.where(Node.id > after)
    return (await session.scalars(query)).all()


async def cluster_owner(session: AsyncSession, node: Node) -> str | None:
    """Who owns the node's cluster (the subject whose node it is, within its tenant)."""
    if node.cluster_id is None:
        return None
    return await session.scalar(select(Cluster.owner).where(Cluster.id == node.cluster_id))


async def id_by_mac(session: AsyncSession, mac: str) -> str | None:
    return await session.scalar(select(Nic.node_id).where(Nic.mac == mac.lower()))


def holder_query(node_id: str) -> Select[tuple[str, str | None, str | None]]:
    """The node's state, the tenant that holds it and the owner of its cluster: whose events
    they are (a tenant's members see the nodes of the clusters they own)."""
    return (
        select(Node.state, Node.tenant_id, Cluster.owner)
        .outerjoin(Cluster, Cluster.id == Node.cluster_id)
        .where(Node.id == node_id)
    )


async def _transition(
    session: AsyncSession,
    node_id: str,
    *,
    allowed_from: Sequence[str],
    to_state: NodeState,
    workflow_id: str,
    operation: str | None,
    holder_may_repeat: bool,
    holder_may_resume_from: Sequence[str] = (),
    require_holder: bool = False,
    reason: str | None = None,
    values: dict[str, object] | None = None,
) -> Node:
    """Move a node to `to_state` if it is in `allowed_from`, or (when `holder_may_repeat`) if the
    same workflow already holds it: a retried activity then changes nothing. The holder may also
    claim again from `holder_may_resume_from` (an SRE's reset of its failed workflow)."""
    condition = Node.state.in_([str(s) for s in allowed_from])
    held = (Node.workflow_id == workflow_id) & (Node.operation == operation)
    if holder_may_repeat:
        condition = condition | (held & (Node.state == to_state.value))
    if holder_may_resume_from:
        condition = condition | (held & Node.state.in_([str(s) for s in holder_may_resume_from]))
    if require_holder:
        condition = condition & (Node.workflow_id == workflow_id) & (Node.operation == operation)
    found = (await session.execute(holder_query(node_id))).one_or_none()
    if found is None:
        raise NodeNotFound(node_id)
    before, tenant, owner = found
    changed = await session.scalar(
        update(Node)
        .where(Node.id == node_id, condition)
        .values(
            state=to_state.value,
            workflow_id=workflow_id,
            operation=operation,
            last_error=reason if to_state == NodeState.FAILED else None,
            **(values or {}),
        )
        .returning(Node.id)
    )
    if changed is None:
        current = await get(session, node_id)
        raise NodeConflict(
            f"node {node_id!r} is {current.state}"
            + (f" (held by {current.operation} {current.workflow_id})" if current.operation else "")
            + f"; {operation or 'this operation'} needs one of: {', '.join(allowed_from)}"
        )
    if before != to_state.value:
        events.record(
            session,
            kind="node",
            resource_id=node_id,
            tenant_id=tenant,
            owner=owner,
            from_state=before,
            to_state=to_state.value,
            workflow_id=workflow_id,
            reason=reason,
        )
    # populate_existing: the UPDATE above bypassed any copy already in the session.
    return await session.get_one(Node, node_id, populate_existing=True)


async def claim_for_provision(
    session: AsyncSession, node_id: str, *, workflow_id: str, image: str
) -> Node:
    return await _transition(
        session,
        node_id,
        allowed_from=PROVISION_FROM,
        to_state=NodeState.PROVISIONING,
        workflow_id=workflow_id,
        operation="provision",
        holder_may_repeat=True,
        values={"image": image, "facts": None, "needs_cleaning": True},
    )


async def claim_for_release(session: AsyncSession, node_id: str, *, workflow_id: str) -> Node:
    return await _transition(
        session,
        node_id,
        allowed_from=RELEASE_FROM,
        to_state=NodeState.CLEANING,
        workflow_id=workflow_id,
        operation="release",
        holder_may_repeat=True,
    )


async def claim_for_commission(session: AsyncSession, node_id: str, *, workflow_id: str) -> Node:
    """Claim a free node for commissioning (the one enrolled `inspecting` by this workflow:
    a repeat). Never one that may hold a tenant's data: a release cleans it first."""
    node = await get(session, node_id)
    if node.needs_cleaning and node.workflow_id != workflow_id:
        raise NodeNeedsCleaning(
            f"node {node_id!r} has not been cleaned since its last tenant: release it first"
        )
    if node.tenant_id is not None and node.workflow_id != workflow_id:
        raise NodeConflict(f"node {node_id!r} is held by tenant {node.tenant_id}")
    return await _transition(
        session,
        node_id,
        allowed_from=COMMISSION_FROM,
        to_state=NodeState.INSPECTING,
        workflow_id=workflow_id,
        operation="commission",
        holder_may_repeat=True,
    )


async def claim_for_reboot(session: AsyncSession, node_id: str, *, workflow_id: str) -> Node:
    return await _transition(
        session,
        node_id,
        allowed_from=REBOOT_FROM,
        to_state=NodeState.REBOOTING,
        workflow_id=workflow_id,
        operation="reboot",
        holder_may_repeat=True,
        holder_may_resume_from=[NodeState.FAILED],
    )


async def claim_for_rescue(session: AsyncSession, node_id: str, *, workflow_id: str) -> Node:
    return await _transition(
        session, node_id, allowed_from=RESCUE_FROM, to_state=NodeState.RESCUING,
        workflow_id=workflow_id, operation="rescue", holder_may_repeat=True,
        holder_may_resume_from=[NodeState.FAILED],
    )  # fmt: skip


async def claim_for_unrescue(session: AsyncSession, node_id: str, *, workflow_id: str) -> Node:
    return await _transition(
        session, node_id, allowed_from=UNRESCUE_FROM, to_state=NodeState.REBOOTING,
        workflow_id=workflow_id, operation="unrescue", holder_may_repeat=True,
        holder_may_resume_from=[NodeState.FAILED],
    )  # fmt: skip


async def reboot_claimed_from(
    session: AsyncSession, node_id: str, *, workflow_id: str
) -> str | None:
    """The state the node was in when this workflow last claimed it for a reboot (`active` from
    the API, `failed` on an SRE's reset), read from its events: a repeated claim records none."""
    return await session.scalar(
        select(Event.from_state)
        .where(
            Event.kind == "node",
            Event.resource_id == node_id,
            Event.workflow_id == workflow_id,
            Event.to_state == NodeState.REBOOTING.value,
        )
        .order_by(Event.id.desc())
        .limit(1)
    )


async def record_reboot(
    session: AsyncSession, node_id: str, *, workflow_id: str, reason: str
) -> None:
    """An active node rebooted and was verified again: an event, with no change of state."""
    await record_note(session, node_id, workflow_id=workflow_id, reason=reason)


async def fail_after_reboot(
    session: AsyncSession, node_id: str, *, workflow_id: str, reason: str
) -> Node:
    """An active node's reboot failed verification: `failed` with the reason."""
    return await _transition(
        session,
        node_id,
        allowed_from=[NodeState.ACTIVE],
        to_state=NodeState.FAILED,
        workflow_id=workflow_id,
        operation="reboot-check",
        holder_may_repeat=True,
        reason=reason,
    )


async def finish(
    session: AsyncSession,
    node_id: str,
    *,
    workflow_id: str,
    operation: str,
    to_state: NodeState,
    reason: str | None = None,
    values: dict[str, object] | None = None,
) -> Node:
    """End the operation `operation` held by `workflow_id`: only its holder may do that."""
    held_state = HELD_STATE[operation]
    node = await get(session, node_id)
    if (
        node.workflow_id == workflow_id
        and node.operation == operation
        and node.state == to_state.value
        and node.last_error == (reason if to_state == NodeState.FAILED else None)
    ):
        return node  # already done: a retried activity
    return await _transition(
        session,
        node_id,
        allowed_from=[held_state, NodeState.FAILED, NodeState.ACTIVE],
        to_state=to_state,
        workflow_id=workflow_id,
        operation=operation,
        holder_may_repeat=False,
        require_holder=True,
        reason=reason,
        values=values,
    )


async def enter_maintenance(session: AsyncSession, node_id: str, *, reason: str) -> Node:
    """Take a free node out of service with the operator's reason; a node already in
    maintenance gets the new reason. NodeConflict while anything holds it."""
    found = (await session.execute(holder_query(node_id))).one_or_none()
    if found is None:
        raise NodeNotFound(node_id)
    before = found[0]
    allowed = [str(s) for s in (*MAINTENANCE_FROM, NodeState.MAINTENANCE)]
    changed = await session.scalar(
        update(Node)
        .where(
            Node.id == node_id,
            Node.state.in_(allowed),
            Node.tenant_id.is_(None),
            Node.cluster_id.is_(None),
        )
        .values(state=NodeState.MAINTENANCE.value, maintenance_reason=reason, operation=None)
        .returning(Node.id)
    )
    if changed is None:
        current = await get(session, node_id)
        raise NodeConflict(
            f"node {node_id!r} is {current.state}"
            + (f" in cluster {current.cluster_id}" if current.cluster_id else "")
            + "; it can be put in maintenance when free and one of: "
            + ", ".join(str(s) for s in MAINTENANCE_FROM)
        )
    if before != NodeState.MAINTENANCE.value:
        events.record(
            session, kind="node", resource_id=node_id, tenant_id=None, owner=None,
            from_state=before, to_state=NodeState.MAINTENANCE.value, workflow_id=None,
            reason=reason,
        )  # fmt: skip
    return await _reloaded(session, node_id)


async def leave_maintenance(session: AsyncSession, node_id: str, *, reason: str) -> Node:
    """Return a node in maintenance to service: `available`. NodeConflict in any other state,
    and NodeNeedsCleaning while a tenant's data may be on it (a release cleans it)."""
    node = await get(session, node_id)
    if node.needs_cleaning and node.state == NodeState.MAINTENANCE.value:
        raise NodeNeedsCleaning(
            f"node {node_id!r} has not been cleaned since its last tenant: release it, which"
            " cleans it and makes it available"
        )
    changed = await session.scalar(
        update(Node)
        .where(Node.id == node_id, Node.state == NodeState.MAINTENANCE.value)
        .values(state=NodeState.AVAILABLE.value, maintenance_reason=None, last_error=None)
        .returning(Node.id)
    )
    if changed is None:
        current = await get(session, node_id)
        raise NodeConflict(f"node {node_id!r} is {current.state}, not in maintenance")
    events.record(
        session, kind="node", resource_id=node_id, tenant_id=None, owner=None,
        from_state=NodeState.MAINTENANCE.value, to_state=NodeState.AVAILABLE.value,
        workflow_id=None, reason=reason,
    )  # fmt: skip
    return await _reloaded(session, node_id)


async def record_note(
    session: AsyncSession, node_id: str, *, workflow_id: str, reason: str
) -> None:
    """An event on the node with no change of state (what a step found)."""
    state, tenant, owner = (await session.execute(holder_query(node_id))).one()
    events.record(
        session, kind="node", resource_id=node_id, tenant_id=tenant, owner=owner,
        from_state=state, to_state=state, workflow_id=workflow_id, reason=reason,
    )  # fmt: skip


async def _reloaded(session: AsyncSession, node_id: str) -> Node:
    """The node as the UPDATE left it, with its NICs (what the API shows)."""
    query = select(Node).where(Node.id == node_id).options(selectinload(Node.nics))
    node = await session.scalar(query.execution_options(populate_existing=True))
    if node is None:
        raise NodeNotFound(node_id)
    return node
