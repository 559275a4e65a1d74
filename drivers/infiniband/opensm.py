"""Partitions through OpenSM: the partitions.conf it reads, rewritten whole, then a SIGHUP.

This backend runs on the subnet manager's host: it writes OpenSM's partition file and signals the
OpenSM process (its PID from a pid file, or given). A subnet manager on another host would need
the same steps over SSH; that transport is not built.

The file holds the Default partition statement (kept as found, or `DEFAULT_PARTITION` when the
file has none, so that every port keeps the management partition) and one statement per PKey:

    tenant-a=0x0101, ipoib : 0x0002c90300000011=full, 0x0002c90300000021=limited ;

Every change reads and parses the file, edits the parsed partitions, and only when they differ
writes a new file (temporary file + rename: OpenSM never reads half a file) and reloads OpenSM.
Writers are serialized by an flock on `<file>.lock`, so several worker processes may share one
file. A reload that failed after the write leaves `<file>.reload-pending`; the next call reloads
even when it changes nothing, so a retry cannot skip the reload. OpenSM applies the new file on
the sweep the SIGHUP triggers (about 50 ms in the lab); calls return once it is signalled.

File syntax (opensm(8), PARTITION CONFIGURATION): `#` starts a comment, statements end at `;`
and may span lines, `Name=PKey[,flag]*[,defmember=full|limited] : guid[=full|limited], ... ;`.
Statements this backend cannot represent (no PKey, `both` membership, ALL/SELF keywords or
multicast groups outside the Default partition) make every call fail rather than be dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from drivers.infiniband.base import (
    InvalidPartition,
    Member,
    Membership,
    Partition,
    PartitionError,
    check_pkey,
    normalize_guid,
)

log = logging.getLogger("metalplane.infiniband")

DEFAULT_PKEY = 0x7FFF
# Every end port a full member of the management partition, as OpenSM does without a file.
DEFAULT_PARTITION = "Default=0x7fff, ipoib : ALL=full ;"
HEADER = (
    "# Managed by metalplane (drivers/infiniband/opensm.py): rewritten whole on every change.\n"
    "# One statement per partition; statements it cannot represent stop it from writing.\n"
)
LOCK_TIMEOUT = 30.0  # seconds a writer waits for another writer's flock

# OpenSM's parser splits on '=', ',', ':', ';', '#' and whitespace; keep names clear of them.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEYWORDS = frozenset({"ALL", "ALL_CAS", "ALL_SWITCHES", "ALL_ROUTERS", "SELF"})
_MEMBERSHIPS = {"full": Membership.FULL, "limited": Membership.LIMITED}


@dataclass(frozen=True)
class ConfPartition:
    pkey: int
    name: str
    flags: tuple[str, ...]  # as written (ipoib, indx0, mtu=5, ...); defmember is not kept
    members: frozenset[Member]


@dataclass(frozen=True)
class PartitionsConf:
    default: str  # the Default partition statement, verbatim with its ';'
    partitions: Mapping[int, ConfPartition] = field(default_factory=dict)

    def with_partition(self, partition: ConfPartition) -> PartitionsConf:
        return replace(self, partitions={**self.partitions, partition.pkey: partition})

    def without(self, pkey: int) -> PartitionsConf:
        return replace(self, partitions={k: v for k, v in self.partitions.items() if k != pkey})


def parse_partitions_conf(text: str, *, default: str = DEFAULT_PARTITION) -> PartitionsConf:
    """Parse a partitions.conf; `default` stands in for a missing Default statement."""
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    *statements, rest = body.split(";")
    if rest.strip():
        raise InvalidPartition(f"partitions.conf: statement without ';': {rest.strip()!r}")
    found_default: str | None = None
    partitions: dict[int, ConfPartition] = {}
    for raw in statements:
        statement = raw.strip()
        if not statement:
            continue
        name, pkey, flags, members = _parse_statement(statement)
        if pkey == DEFAULT_PKEY or (pkey is None and name == "Default"):
            # Kept as written, up to its ';' (an mgid line in it must end at a newline).
            found_default = raw.lstrip() + ";"
            continue
        if not pkey:
            raise InvalidPartition(f"partitions.conf: {statement!r} has no valid PKey")
        partitions[pkey] = _merge(partitions.get(pkey), ConfPartition(pkey, name, flags, members))
    return PartitionsConf(found_default or default, partitions)


def render_partitions_conf(conf: PartitionsConf) -> str:
    lines = [conf.default]
    for pkey in sorted(conf.partitions):
        partition = conf.partitions[pkey]
        head = ", ".join([f"{partition.name}={pkey:#06x}", *partition.flags])
        members = ", ".join(f"{m.guid}={m.membership}" for m in sorted(partition.members))
        lines.append(f"{head} : {members} ;" if members else f"{head} : ;")
    return HEADER + "\n".join(lines) + "\n"


def _parse_statement(
    statement: str,
) -> tuple[str, int | None, tuple[str, ...], frozenset[Member]]:
    definition, colon, properties = statement.partition(":")
    if not colon:
        raise InvalidPartition(f"partitions.conf: no ':' in {statement!r}")
    head, *raw_flags = (part.strip() for part in definition.split(","))
    name, equals, pkey_text = (part.strip() for part in head.partition("="))
    pkey = _parse_number(pkey_text, statement) & 0x7FFF if equals else None  # low 15 bits
    defmember = Membership.LIMITED  # OpenSM's default
    flags: list[str] = []
    for flag in filter(None, raw_flags):
        key, _, value = (part.strip() for part in flag.partition("="))
        if key == "defmember":
            defmember = _parse_membership(value, statement)
        else:
            flags.append(f"{key}={value}" if value else key)
    if pkey == DEFAULT_PKEY or (pkey is None and name == "Default"):
        return name, pkey, tuple(flags), frozenset()  # ALL, SELF, mgid=: left to OpenSM
    members: dict[str, Member] = {}
    for entry in filter(None, (part.strip() for part in properties.split(","))):
        port, equals, membership = (part.strip() for part in entry.partition("="))
        if port.upper() in _KEYWORDS or port.lower() == "mgid":
            raise InvalidPartition(f"partitions.conf: {entry!r} in {statement!r} is not a port")
        guid = f"0x{_parse_number(port, statement):016x}"
        member = Member(guid, _parse_membership(membership, statement) if equals else defmember)
        members[guid] = _same_member(members.get(guid), member, statement)
    return name, pkey, tuple(flags), frozenset(members.values())


def _parse_number(text: str, statement: str) -> int:
    """OpenSM reads 0x-prefixed numbers as hex, others as decimal."""
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise InvalidPartition(f"partitions.conf: {text!r} in {statement!r} is no number") from None
    if not 0 <= value < 1 << 64:
        raise InvalidPartition(f"partitions.conf: {text!r} in {statement!r} is out of range")
    return value


def _parse_membership(text: str, statement: str) -> Membership:
    try:
        return _MEMBERSHIPS[text]
    except KeyError:
        raise InvalidPartition(
            f"partitions.conf: membership {text!r} in {statement!r} is not full or limited"
        ) from None


def _same_member(current: Member | None, member: Member, statement: str) -> Member:
    if current is not None and current != member:
        raise InvalidPartition(f"partitions.conf: {member.guid} listed twice in {statement!r}")
    return member


def _merge(current: ConfPartition | None, more: ConfPartition) -> ConfPartition:
    """OpenSM merges statements of one PKey under the first one's name."""
    if current is None:
        return more
    members = {m.guid: m for m in current.members}
    for member in more.members:
        members[member.guid] = _same_member(members.get(member.guid), member, more.name)
    flags = current.flags + tuple(f for f in more.flags if f not in current.flags)
    return replace(current, flags=flags, members=frozenset(members.values()))


def _normalize_members(members: Collection[Member]) -> dict[str, Member]:
    wanted: dict[str, Member] = {}
    for member in members:
        guid = normalize_guid(member.guid)
        normalized = Member(guid, Membership(member.membership))
        if wanted.get(guid, normalized) != normalized:
            raise InvalidPartition(f"{guid} is asked for as both full and limited member")
        wanted[guid] = normalized
    return wanted


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidPartition(
            f"partition name {name!r} must be 1-64 letters, digits, '.', '_' or '-'"
        )
    return name


class OpenSmPartitions:
    """`PartitionManager` over OpenSM's partitions.conf, on the subnet manager's host."""

    def __init__(
        self,
        partitions_file: Path,
        *,
        pid_file: Path | None = None,
        pid: int | None = None,
        default_partition: str = DEFAULT_PARTITION,
        ipoib: bool = True,
    ) -> None:
        if (pid_file is None) == (pid is None):
            raise ValueError("give OpenSM's pid_file or its pid")
        self.partitions_file = Path(partitions_file)
        self.pid_file = pid_file
        self.pid = pid
        self.default_partition = default_partition
        self.flags: tuple[str, ...] = ("ipoib",) if ipoib else ()
        self.reloads = 0  # SIGHUPs this instance sent
        self._lock_path = self.partitions_file.with_name(self.partitions_file.name + ".lock")
        self._pending = self.partitions_file.with_name(
            self.partitions_file.name + ".reload-pending"
        )
        self._local = asyncio.Lock()  # one thread per instance waits on the flock, not many

    async def partitions(self) -> Mapping[int, Partition]:
        conf = await asyncio.to_thread(self._read)
        return {k: Partition(k, p.name, p.members) for k, p in conf.partitions.items()}

    async def ensure_pkey(self, pkey: int, name: str) -> None:
        """Create the partition, empty. Refuses a PKey that is another partition's: adding this
        tenant's ports to it would join them to the other one."""
        check_pkey(pkey)
        check_name(name)

        def edit(conf: PartitionsConf) -> PartitionsConf:
            current = conf.partitions.get(pkey)
            if current is None:
                return conf.with_partition(ConfPartition(pkey, name, self.flags, frozenset()))
            if current.name != name:
                raise InvalidPartition(f"PKey {pkey:#06x} is partition {current.name!r}")
            return conf

        await self._change(edit)

    async def add_members(self, pkey: int, members: Collection[Member]) -> None:
        check_pkey(pkey)
        wanted = _normalize_members(members)

        def edit(conf: PartitionsConf) -> PartitionsConf:
            current = conf.partitions.get(pkey)
            if current is None:
                raise InvalidPartition(f"PKey {pkey:#06x} does not exist (ensure_pkey first)")
            merged = {m.guid: m for m in current.members} | wanted
            return conf.with_partition(replace(current, members=frozenset(merged.values())))

        await self._change(edit)

    async def remove_members(self, pkey: int, guids: Collection[str]) -> None:
        check_pkey(pkey)
        gone = {normalize_guid(g) for g in guids}

        def edit(conf: PartitionsConf) -> PartitionsConf:
            current = conf.partitions.get(pkey)
            if current is None:
                return conf
            kept = frozenset(m for m in current.members if m.guid not in gone)
            return conf.with_partition(replace(current, members=kept))

        await self._change(edit)

    async def remove_pkey(self, pkey: int) -> None:
        check_pkey(pkey)
        await self._change(lambda conf: conf.without(pkey))

    async def close(self) -> None:
        return None  # holds no connection; the lock file is opened per change

    # Everything below runs in a worker thread.

    def _read(self) -> PartitionsConf:
        try:
            text = self.partitions_file.read_text()
        except FileNotFoundError:
            text = ""
        return parse_partitions_conf(text, default=self.default_partition)

    async def _change(self, edit: Callable[[PartitionsConf], PartitionsConf]) -> bool:
        async with self._local:
            return await asyncio.to_thread(self._change_locked, edit)

    def _change_locked(self, edit: Callable[[PartitionsConf], PartitionsConf]) -> bool:
        with _flock(self._lock_path, LOCK_TIMEOUT):
            current = self._read()
            wanted = edit(current)
            changed = wanted != current
            if changed:
                self._pending.touch()  # before the write: a crash in between still reloads
                _write_atomically(self.partitions_file, render_partitions_conf(wanted))
                log.info("%s: partitions %s", self.partitions_file, _describe(current, wanted))
            if changed or self._pending.exists():
                self._reload()
                self._pending.unlink(missing_ok=True)
            return changed

    def _reload(self) -> None:
        pid = self._opensm_pid()
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = ""
        # A stale pid file may name another process now; SIGHUP would end most of them.
        if comm != "opensm":
            raise PartitionError(f"{self.partitions_file} written; pid {pid} is not OpenSM")
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise PartitionError(f"{self.partitions_file} written; OpenSM {pid} exited") from None
        self.reloads += 1

    def _opensm_pid(self) -> int:
        if self.pid is not None:
            return self.pid
        assert self.pid_file is not None
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise PartitionError(
                f"{self.partitions_file} written; no OpenSM pid in {self.pid_file}"
            ) from None


def _describe(before: PartitionsConf, after: PartitionsConf) -> str:
    changed = sorted(
        f"{k:#06x}"
        for k in before.partitions.keys() | after.partitions.keys()
        if before.partitions.get(k) != after.partitions.get(k)
    )
    return "changed: " + ", ".join(changed) if changed else "default statement rewritten"


@contextlib.contextmanager
def _flock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock, waited for at most `timeout` seconds."""
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise PartitionError(
                        f"{path} held by another writer for {timeout:.0f}s"
                    ) from exc
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
