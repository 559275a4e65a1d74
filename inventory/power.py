"""The platform's record of each node's power, and what a power-state sync makes of a reading.

The power activities record the state they brought a node to; the sync (workflows/power_sync.py)
reads every node no operation holds through its BMC and `judge`s the reading against the
record: a difference is drift, recorded as a `power` event and, by policy, either taken as the
new record (`report`) or undone by powering the node back (`restore`; never for a node in
maintenance, whose power an operator may be working on). A BMC that fails `unreachable_after`
reads in a row flags the node (`bmc_unreachable_since`) until it answers again. Each change is
one conditional UPDATE: a node an operation claimed, or another sync changed, since the read is
left to the next sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from inventory import events
from inventory.errors import NodeNotFound
from inventory.models import Node
from inventory.states import NodeState

UNKNOWN = "unknown"  # the power state a `power` event names while the BMC does not answer


class PowerPolicy(StrEnum):
    REPORT = "report"  # record the drift and take the reading as the record
    RESTORE = "restore"  # record the drift and power the node back to its record


@dataclass(frozen=True)
class PowerRecord:
    node_id: str
    recorded: str | None  # None: never read
    bmc_failures: int
    unreachable: bool
    held: bool  # an operation holds the node (it is changing the power itself)
    maintenance: bool


@dataclass(frozen=True)
class PowerEvent:
    from_state: str | None
    to_state: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    record: str | None  # the power state to record
    bmc_failures: int
    unreachable: bool
    events: list[PowerEvent] = field(default_factory=list)
    drift: bool = False  # the reading differs from the record
    restore_to: str | None = None  # power the node to this state (policy `restore`)


def judge(
    record: PowerRecord,
    reading: str | None,
    error: str = "",
    *,
    policy: PowerPolicy,
    unreachable_after: int,
) -> Verdict:
    """What a sync does with one reading (None: the BMC did not answer, because of `error`)."""
    if reading is None:
        failures = record.bmc_failures + 1
        if record.unreachable or failures < unreachable_after:
            return Verdict(record.recorded, failures, record.unreachable)
        why = f"the BMC did not answer {failures} reads in a row: {error}"
        return Verdict(record.recorded, failures, True, [PowerEvent(record.recorded, UNKNOWN, why)])
    found = [PowerEvent(UNKNOWN, reading, "the BMC answers again")] if record.unreachable else []
    if record.recorded is None or reading == record.recorded:
        return Verdict(reading, 0, False, found)
    drift = f"power drift: recorded {record.recorded}, the BMC reads {reading}"
    if policy == PowerPolicy.RESTORE and not record.maintenance:
        event = PowerEvent(record.recorded, reading, f"{drift}; restoring {record.recorded}")
        return Verdict(record.recorded, 0, False, [*found, event], True, record.recorded)
    kept = " (in maintenance: not restored)" if policy == PowerPolicy.RESTORE else ""
    event = PowerEvent(record.recorded, reading, f"{drift}; recorded as found{kept}")
    return Verdict(reading, 0, False, [*found, event], drift=True)


async def nodes_to_sync(session: AsyncSession) -> list[str]:
    """The nodes no operation holds, in id order."""
    return list(
        await session.scalars(select(Node.id).where(Node.operation.is_(None)).order_by(Node.id))
    )


async def get_record(session: AsyncSession, node_id: str) -> PowerRecord:
    row = (
        await session.execute(
            select(
                Node.power_state, Node.bmc_failures, Node.bmc_unreachable_since,
                Node.operation, Node.state,
            ).where(Node.id == node_id)
        )
    ).one_or_none()  # fmt: skip
    if row is None:
        raise NodeNotFound(node_id)
    recorded, failures, unreachable_since, operation, state = row
    return PowerRecord(
        node_id, recorded, failures, unreachable_since is not None, operation is not None,
        state == NodeState.MAINTENANCE.value,
    )  # fmt: skip


async def apply(session: AsyncSession, record: PowerRecord, verdict: Verdict) -> bool:
    """Store the verdict and its events unless the node changed since `record` was read (an
    operation claimed it, or another sync ran): False then, and nothing is written."""
    unreachable_since = (
        (Node.bmc_unreachable_since if record.unreachable else func.now())
        if verdict.unreachable
        else None
    )
    changed = await session.scalar(
        update(Node)
        .where(
            Node.id == record.node_id,
            Node.operation.is_(None),
            Node.power_state.is_not_distinct_from(record.recorded),
            Node.bmc_failures == record.bmc_failures,
        )
        .values(
            power_state=verdict.record,
            power_checked_at=func.now(),
            bmc_failures=verdict.bmc_failures,
            bmc_unreachable_since=unreachable_since,
        )
        .returning(Node.id)
    )
    if changed is None:
        return False
    for event in verdict.events:
        record_event(session, record.node_id, event)
    return True


def record_event(session: AsyncSession, node_id: str, event: PowerEvent) -> None:
    """A `power` event: platform roles see it (a node's power is the platform's business)."""
    events.record(
        session, kind="power", resource_id=node_id, from_state=event.from_state,
        to_state=event.to_state, reason=event.reason,
    )  # fmt: skip


async def record_power(session: AsyncSession, node_id: str, state: str) -> None:
    """What a power activity brought the node to: the record the sync compares with."""
    await session.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(power_state=state, power_checked_at=func.now())
        .execution_options(synchronize_session=False)
    )
