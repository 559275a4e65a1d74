"""The Ethernet switch interface: tenant VRFs, EVPN segments and access ports.

A `Switch` composes a `Dialect` (one per NOS: which show commands read the running state, how
to parse them, which configuration commands make one `Change`) with a `Transport` (SSH). Every
operation compares the desired state with the state read from the switch and applies only the
difference; operations on one switch are serialized; when a command fails, the changes already
made by that operation are undone on that switch, newest first, and the error is raised.

The model is the one Cumulus, SONiC and EOS/NX-OS EVPN deployments share:
- a VRF (routing table id, L3 VNI carried on its own VLAN for symmetric IRB);
- a segment: a VLAN bridged to an L2 VNI advertised by BGP EVPN, optionally with an SVI
  (anycast gateway address) in a VRF;
- an access port: an untagged member of one segment's VLAN.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

log = logging.getLogger("metalplane.switch")


class Nos(StrEnum):
    LINUX_FRR = "linux-frr"  # plain Linux + FRR (kernel bridges and VXLAN, FRR for EVPN)
    ARISTA_EOS = "arista-eos"
    CISCO_NXOS = "cisco-nxos"


@dataclass(frozen=True, order=True)
class Vrf:
    name: str
    table: int  # kernel routing table id / route distinguisher index
    l3vni: int
    l3vlan: int  # VLAN that carries the L3 VNI


@dataclass(frozen=True, order=True)
class Segment:
    vlan: int
    vni: int
    vrf: str | None = None  # the SVI's VRF; None: L2 only
    gateway: str | None = None  # SVI address with prefix length, e.g. "10.1.0.1/24"


@dataclass(frozen=True)
class SwitchState:
    """What the switch runs, as far as tenant isolation goes."""

    vrfs: Mapping[str, Vrf] = field(default_factory=dict)
    segments: Mapping[int, Segment] = field(default_factory=dict)  # by VLAN
    access_ports: Mapping[str, int] = field(default_factory=dict)  # port -> VLAN


# One configuration step; `undo` gives the step that reverts it.


@dataclass(frozen=True)
class AddVrf:
    vrf: Vrf

    def undo(self) -> Change:
        return RemoveVrf(self.vrf)


@dataclass(frozen=True)
class RemoveVrf:
    vrf: Vrf

    def undo(self) -> Change:
        return AddVrf(self.vrf)


@dataclass(frozen=True)
class AddSegment:
    segment: Segment

    def undo(self) -> Change:
        return RemoveSegment(self.segment)


@dataclass(frozen=True)
class RemoveSegment:
    segment: Segment

    def undo(self) -> Change:
        return AddSegment(self.segment)


@dataclass(frozen=True)
class SetAccessPort:
    port: str
    vlan: int
    previous: int | None = None  # the VLAN it was in, if any

    def undo(self) -> Change:
        if self.previous is None:
            return ClearAccessPort(self.port, self.vlan)
        return SetAccessPort(self.port, self.previous, self.vlan)


@dataclass(frozen=True)
class ClearAccessPort:
    port: str
    vlan: int  # the VLAN it leaves

    def undo(self) -> Change:
        return SetAccessPort(self.port, self.vlan)


Change = AddVrf | RemoveVrf | AddSegment | RemoveSegment | SetAccessPort | ClearAccessPort


class SwitchError(Exception):
    """A switch operation failed. `retryable`: whether trying again may succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class SwitchUnreachable(SwitchError):
    retryable = True


class SwitchAuthError(SwitchError):
    retryable = False


class SwitchCommandFailed(SwitchError):
    """The switch refused a command (after the operation's earlier changes were undone)."""

    retryable = True


class InvalidChange(SwitchError):
    """The request contradicts what the switch runs (e.g. a VLAN taken by another VNI)."""

    retryable = False


class Transport(Protocol):
    async def show(self, command: str) -> str:
        """Run a read-only command; its output."""
        ...

    async def configure(self, commands: Sequence[str]) -> None:
        """Apply configuration commands in order; SwitchCommandFailed when one is refused."""
        ...

    async def close(self) -> None: ...


class Dialect(ABC):
    """One NOS: how to read the state and how to write each change."""

    nos: Nos

    @abstractmethod
    def state_commands(self) -> Sequence[str]:
        """Show commands whose outputs `parse_state` reads."""

    @abstractmethod
    def parse_state(self, outputs: Mapping[str, str]) -> SwitchState:
        """The state from the outputs of `state_commands` (by command)."""

    def render(self, change: Change) -> list[str]:
        """The configuration commands of one change."""
        match change:
            case AddVrf(vrf):
                return self.add_vrf(vrf)
            case RemoveVrf(vrf):
                return self.remove_vrf(vrf)
            case AddSegment(segment):
                return self.add_segment(segment)
            case RemoveSegment(segment):
                return self.remove_segment(segment)
            case SetAccessPort(port, vlan, _):
                return self.set_access_port(port, vlan)
            case ClearAccessPort(port, vlan):
                return self.clear_access_port(port, vlan)
        raise TypeError(f"not a switch change: {change!r}")

    @abstractmethod
    def add_vrf(self, vrf: Vrf) -> list[str]: ...

    @abstractmethod
    def remove_vrf(self, vrf: Vrf) -> list[str]: ...

    @abstractmethod
    def add_segment(self, segment: Segment) -> list[str]: ...

    @abstractmethod
    def remove_segment(self, segment: Segment) -> list[str]: ...

    @abstractmethod
    def set_access_port(self, port: str, vlan: int) -> list[str]: ...

    @abstractmethod
    def clear_access_port(self, port: str, vlan: int) -> list[str]:
        """Take the port out of `vlan` (which it is in)."""


def plan_vrf(state: SwitchState, vrf: Vrf) -> list[Change]:
    current = state.vrfs.get(vrf.name)
    if current == vrf:
        return []
    if current is not None:
        raise InvalidChange(f"VRF {vrf.name} exists with other values ({current})")
    clash = [v for v in state.vrfs.values() if vrf.l3vni == v.l3vni or vrf.l3vlan == v.l3vlan]
    segment_vnis = {s.vni for s in state.segments.values()}
    if clash or vrf.l3vlan in state.segments or vrf.l3vni in segment_vnis:
        raise InvalidChange(f"L3 VNI {vrf.l3vni} or VLAN {vrf.l3vlan} of {vrf.name} is taken")
    return [AddVrf(vrf)]


def plan_remove_vrf(state: SwitchState, name: str) -> list[Change]:
    current = state.vrfs.get(name)
    if current is None:
        return []
    users = [s.vlan for s in state.segments.values() if s.vrf == name]
    if users:
        raise InvalidChange(f"VRF {name} still routes VLANs {users}")
    return [RemoveVrf(current)]


def plan_segment(state: SwitchState, segment: Segment) -> list[Change]:
    current = state.segments.get(segment.vlan)
    if current == segment:
        return []
    if current is not None:
        raise InvalidChange(f"VLAN {segment.vlan} carries another segment ({current})")
    if any(s.vni == segment.vni for s in state.segments.values()):
        raise InvalidChange(f"VNI {segment.vni} is already bridged to another VLAN")
    # A VRF's L3 VNI and VLAN are no segment, but they are taken all the same.
    if any(segment.vlan == v.l3vlan or segment.vni == v.l3vni for v in state.vrfs.values()):
        raise InvalidChange(f"VLAN {segment.vlan} or VNI {segment.vni} carries a VRF's L3 VNI")
    if segment.vrf is not None and segment.vrf not in state.vrfs:
        raise InvalidChange(f"VRF {segment.vrf} does not exist on this switch")
    return [AddSegment(segment)]


def plan_remove_segment(state: SwitchState, vlan: int) -> list[Change]:
    current = state.segments.get(vlan)
    if current is None:
        return []
    # Ports leave the VLAN first, so that the segment can go.
    ports = sorted(p for p, v in state.access_ports.items() if v == vlan)
    return [*(ClearAccessPort(p, vlan) for p in ports), RemoveSegment(current)]


def plan_access_port(state: SwitchState, port: str, vlan: int) -> list[Change]:
    previous = state.access_ports.get(port)
    if previous == vlan:
        return []
    if vlan not in state.segments:
        raise InvalidChange(f"VLAN {vlan} has no segment on this switch")
    return [SetAccessPort(port, vlan, previous)]


def plan_clear_access_port(state: SwitchState, port: str) -> list[Change]:
    previous = state.access_ports.get(port)
    return [] if previous is None else [ClearAccessPort(port, previous)]


class Switch:
    """One switch: a dialect over a transport, one operation at a time."""

    def __init__(self, name: str, dialect: Dialect, transport: Transport) -> None:
        self.name = name
        self.dialect = dialect
        self.transport = transport
        self._lock = asyncio.Lock()

    async def state(self) -> SwitchState:
        commands = self.dialect.state_commands()
        outputs = {command: await self.transport.show(command) for command in commands}
        return self.dialect.parse_state(outputs)

    async def ensure_vrf(self, vrf: Vrf) -> list[Change]:
        return await self._converge(lambda s: plan_vrf(s, vrf))

    async def remove_vrf(self, name: str) -> list[Change]:
        return await self._converge(lambda s: plan_remove_vrf(s, name))

    async def ensure_segment(self, segment: Segment) -> list[Change]:
        return await self._converge(lambda s: plan_segment(s, segment))

    async def remove_segment(self, vlan: int) -> list[Change]:
        return await self._converge(lambda s: plan_remove_segment(s, vlan))

    async def set_access_port(self, port: str, vlan: int) -> list[Change]:
        return await self._converge(lambda s: plan_access_port(s, port, vlan))

    async def clear_access_port(self, port: str) -> list[Change]:
        return await self._converge(lambda s: plan_clear_access_port(s, port))

    async def close(self) -> None:
        await self.transport.close()

    async def _converge(self, plan: _Planner) -> list[Change]:
        """Read, plan the difference, apply it; undo this operation's changes if one fails."""
        async with self._lock:
            changes = plan(await self.state())
            # Rendered up front: a change the dialect refuses leaves the switch untouched.
            rendered = [(change, self.dialect.render(change)) for change in changes]
            started: list[Change] = []
            try:
                for change, commands in rendered:
                    started.append(change)  # a failing change may have half-applied
                    await self.transport.configure(commands)
            except SwitchError as failure:
                await self._roll_back(started, failure)
                raise
            if changes:
                log.info("%s: applied %s", self.name, changes)
            return changes

    async def _roll_back(self, started: list[Change], failure: SwitchError) -> None:
        log.warning("%s: %s; rolling back %d change(s)", self.name, failure, len(started))
        for change in reversed(started):
            undo = change.undo()
            try:
                await self.transport.configure(self.dialect.render(undo))
            except SwitchError as exc:  # keep undoing the rest; report what stays behind
                log.error("%s: rollback of %s failed: %s", self.name, change, exc)


class _Planner(Protocol):
    def __call__(self, state: SwitchState, /) -> list[Change]: ...
