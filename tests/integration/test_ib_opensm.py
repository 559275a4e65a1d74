"""The OpenSM partition backend against an unmodified OpenSM managing an ibsim fabric (two
switches, five GPU nodes): what the backend writes must reach every port's PKey table, read back
with `smpquery pkeys` as the subnet management agents hold it. A call that changes nothing must
neither rewrite the file nor reload OpenSM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.infiniband.base import (
    InvalidPartition,
    Member,
    Membership,
    Partition,
    PartitionError,
)
from drivers.infiniband.opensm import OpenSmPartitions
from lab.ib.smp import pkey_entries
from lab.ib.subnet import IbSubnet

DEFAULT = 0xFFFF  # the management partition, full member (partitions.conf: ALL=full)
FULL, LIMITED = Membership.FULL, Membership.LIMITED
NODES = ("gpu-001", "gpu-002", "gpu-003", "gpu-004", "gpu-005")


@pytest.fixture(scope="module")
def subnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IbSubnet]:
    lab = IbSubnet(tmp_path_factory.mktemp("ib"), nodes=len(NODES), switches=2)
    lab.start()  # fails the module's tests when ibsim or OpenSM cannot start
    try:
        yield lab
    finally:
        lab.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def backend(subnet: IbSubnet) -> AsyncIterator[OpenSmPartitions]:
    manager = OpenSmPartitions(subnet.partitions_file, pid_file=subnet.opensm_pid_file)
    yield manager
    # Leave the fabric with the Default partition only, for the next test.
    for pkey in await manager.partitions():
        await manager.remove_pkey(pkey)
    await manager.close()
    await expect_tables(subnet, {})


def guid(subnet: IbSubnet, node: str) -> str:
    return subnet.ports[node].port_guid


def member(subnet: IbSubnet, node: str, membership: Membership = FULL) -> Member:
    return Member(guid(subnet, node), membership)


async def expect_tables(subnet: IbSubnet, tenants: Mapping[str, set[int]]) -> None:
    """Every GPU node's PKey table holds the default partition plus exactly `tenants[node]`."""
    wanted = {node: {DEFAULT, *tenants.get(node, set())} for node in NODES}
    deadline = time.monotonic() + 5.0
    while True:
        held = {n: pkey_entries(await asyncio.to_thread(subnet.pkey_table, n)) for n in NODES}
        if held == wanted:
            return
        if time.monotonic() > deadline:
            shown = {n: sorted(map(hex, v)) for n, v in held.items()}
            pytest.fail(f"PKey tables {shown}, wanted {wanted}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def untouched(subnet: IbSubnet, backend: OpenSmPartitions) -> AsyncIterator[None]:
    """The block neither rewrites partitions.conf nor signals OpenSM."""
    before = subnet.partitions_file.stat()
    reloads = backend.reloads
    yield
    after = subnet.partitions_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert backend.reloads == reloads


async def test_tenant_partition_lifecycle(subnet: IbSubnet, backend: OpenSmPartitions) -> None:
    await backend.ensure_pkey(0x0101, "tenant-a")
    assert backend.reloads == 1
    assert await backend.partitions() == {0x0101: Partition(0x0101, "tenant-a", frozenset())}
    async with untouched(subnet, backend):
        await backend.ensure_pkey(0x0101, "tenant-a")

    members = [
        member(subnet, "gpu-001"),
        member(subnet, "gpu-002"),
        member(subnet, "gpu-003", LIMITED),
    ]
    await backend.add_members(0x0101, members)
    assert backend.reloads == 2
    assert (await backend.partitions())[0x0101].members == frozenset(members)
    # Full members carry the membership bit (0x8000); the limited member the bare PKey.
    await expect_tables(subnet, {"gpu-001": {0x8101}, "gpu-002": {0x8101}, "gpu-003": {0x0101}})
    async with untouched(subnet, backend):
        await backend.add_members(0x0101, members)
        await backend.add_members(0x0101, [member(subnet, "gpu-001")])
        await backend.add_members(0x0101, [])

    await backend.remove_members(0x0101, [guid(subnet, "gpu-002"), guid(subnet, "gpu-003")])
    await expect_tables(subnet, {"gpu-001": {0x8101}})
    async with untouched(subnet, backend):
        await backend.remove_members(0x0101, [guid(subnet, "gpu-002"), guid(subnet, "gpu-003")])
        await backend.remove_members(0x0101, [guid(subnet, "gpu-005")])  # never a member

    await backend.remove_pkey(0x0101)
    assert await backend.partitions() == {}
    await expect_tables(subnet, {})
    async with untouched(subnet, backend):
        await backend.remove_pkey(0x0101)
        await backend.remove_members(0x0101, [guid(subnet, "gpu-001")])
    assert backend.reloads == 4
    assert "Default=0x7fff, ipoib : ALL=full ;" in subnet.partitions_file.read_text()


async def test_two_tenants_on_disjoint_ports_stay_disjoint(
    subnet: IbSubnet, backend: OpenSmPartitions
) -> None:
    # gpu-001/003 hang off sw1, gpu-002/004 off sw2.
    await backend.ensure_pkey(0x0201, "tenant-a")
    await backend.ensure_pkey(0x0202, "tenant-b")
    await backend.add_members(0x0201, [member(subnet, "gpu-001"), member(subnet, "gpu-003")])
    await backend.add_members(
        0x0202, [member(subnet, "gpu-002"), member(subnet, "gpu-004", LIMITED)]
    )
    await expect_tables(
        subnet,
        {"gpu-001": {0x8201}, "gpu-003": {0x8201}, "gpu-002": {0x8202}, "gpu-004": {0x0202}},
    )
    # A membership change is a change: gpu-004 becomes a full member.
    await backend.add_members(0x0202, [member(subnet, "gpu-004")])
    await expect_tables(
        subnet,
        {"gpu-001": {0x8201}, "gpu-003": {0x8201}, "gpu-002": {0x8202}, "gpu-004": {0x8202}},
    )
    await backend.remove_pkey(0x0201)
    await expect_tables(subnet, {"gpu-002": {0x8202}, "gpu-004": {0x8202}})


async def test_invalid_calls_change_nothing(subnet: IbSubnet, backend: OpenSmPartitions) -> None:
    await backend.ensure_pkey(0x0301, "tenant-a")
    async with untouched(subnet, backend):
        for pkey in (0x0000, 0x7FFF, 0x8000, -1):
            with pytest.raises(InvalidPartition) as raised:
                await backend.ensure_pkey(pkey, "tenant-x")
            assert raised.value.retryable is False
        with pytest.raises(InvalidPartition):
            await backend.ensure_pkey(0x0302, "tenant x")  # OpenSM would split the name
        with pytest.raises(InvalidPartition, match="is partition 'tenant-a'"):
            await backend.ensure_pkey(0x0301, "tenant-b")  # another tenant's PKey
        with pytest.raises(InvalidPartition, match="does not exist"):
            await backend.add_members(0x0302, [member(subnet, "gpu-001")])
        with pytest.raises(InvalidPartition, match="64-bit port GUID"):
            await backend.add_members(0x0301, [Member("0x1234")])
        with pytest.raises(InvalidPartition, match="both full and limited"):
            await backend.add_members(
                0x0301, [member(subnet, "gpu-001"), member(subnet, "gpu-001", LIMITED)]
            )
    await expect_tables(subnet, {})


async def test_a_failed_reload_is_redone_by_the_next_call(
    subnet: IbSubnet, backend: OpenSmPartitions
) -> None:
    # A pid that is not OpenSM's (ours): the backend writes, then must refuse to signal it.
    stale = OpenSmPartitions(subnet.partitions_file, pid=os.getpid())
    with pytest.raises(PartitionError, match="is not OpenSM") as raised:
        await stale.ensure_pkey(0x0401, "tenant-a")
    assert raised.value.retryable is True
    pending = subnet.partitions_file.with_name("partitions.conf.reload-pending")
    assert pending.exists()
    with pytest.raises(PartitionError, match="is not OpenSM"):
        await stale.add_members(0x0401, [member(subnet, "gpu-005")])
    await asyncio.sleep(0.2)
    await expect_tables(subnet, {})  # OpenSM never heard of the change

    # The retry changes nothing in the file, and reloads all the same.
    await backend.add_members(0x0401, [member(subnet, "gpu-005")])
    assert backend.reloads == 1 and not pending.exists()
    await expect_tables(subnet, {"gpu-005": {0x8401}})
    async with untouched(subnet, backend):
        await backend.add_members(0x0401, [member(subnet, "gpu-005")])


async def test_writers_in_separate_instances_do_not_lose_updates(
    subnet: IbSubnet, backend: OpenSmPartitions
) -> None:
    # Two instances stand for two worker processes: only the flock orders them.
    other = OpenSmPartitions(subnet.partitions_file, pid_file=subnet.opensm_pid_file)
    await backend.ensure_pkey(0x0501, "tenant-a")
    await asyncio.gather(
        *(
            manager.add_members(0x0501, [member(subnet, node)])
            for manager, node in zip([backend, other] * 3, NODES, strict=False)
        )
    )
    assert (await other.partitions())[0x0501].members == frozenset(
        member(subnet, node) for node in NODES
    )
    await expect_tables(subnet, {node: {0x8501} for node in NODES})


async def test_no_pid_file_is_a_retryable_error(subnet: IbSubnet, tmp_path: Path) -> None:
    manager = OpenSmPartitions(subnet.partitions_file, pid_file=tmp_path / "opensm.pid")
    with pytest.raises(PartitionError, match="no OpenSM pid") as raised:
        await manager.ensure_pkey(0x0601, "tenant-a")
    assert raised.value.retryable is True
    # Undo through a backend that can reload, so that no pending reload outlives this test.
    good = OpenSmPartitions(subnet.partitions_file, pid_file=subnet.opensm_pid_file)
    await good.remove_pkey(0x0601)
    assert good.reloads == 1
