"""The UFM partition client against the UFM REST contract simulator (lab/ib/ufm_sim.py) over
real HTTP with basic auth: the tenant scenario of the OpenSM test (minus the fabric: no UFM can run
here), idempotency counted in the requests UFM receives, and the errors a caller acts on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from cli import devstack
from drivers.infiniband.base import (
    InvalidPartition,
    Member,
    Membership,
    Partition,
    PartitionError,
)
from drivers.infiniband.ufm import UfmAuthError, UfmPartitions
from lab.ib.ufm_sim import PASSWORD, USERNAME, SimGuid, UfmSimulator

PORT = 18761  # UFM simulator range 18760-18769
NOTHING_LISTENS = 18769
URL = f"http://127.0.0.1:{PORT}"
FULL, LIMITED = Membership.FULL, Membership.LIMITED
GUIDS = [f"0x0002c903{16 * i + 1:08x}" for i in range(1, 6)]  # the IB lab's GPU node ports


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ufm() -> AsyncIterator[UfmSimulator]:
    devstack.ensure_port_free(PORT)
    simulator = UfmSimulator()
    await simulator.start("127.0.0.1", PORT)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(ufm: UfmSimulator) -> AsyncIterator[UfmPartitions]:
    manager = UfmPartitions(URL, USERNAME, PASSWORD, timeout=2.0)
    yield manager
    for pkey in await manager.partitions():
        await manager.remove_pkey(pkey)
    await manager.close()
    assert set(ufm.pkeys) == {0x7FFF}


def sent_writes(ufm: UfmSimulator) -> int:
    return len(ufm.writes())


async def test_tenant_partition_lifecycle(ufm: UfmSimulator, client: UfmPartitions) -> None:
    await client.ensure_pkey(0x0101, "tenant-a")
    assert ufm.writes()[-1] == ("POST", "/ufmRest/resources/pkeys/add")
    assert await client.partitions() == {0x0101: Partition(0x0101, "api_pkey_0x101", frozenset())}
    writes = sent_writes(ufm)
    await client.ensure_pkey(0x0101, "tenant-a")
    assert sent_writes(ufm) == writes

    members = [Member(GUIDS[0]), Member(GUIDS[1]), Member(GUIDS[2], LIMITED)]
    await client.add_members(0x0101, members)
    assert sent_writes(ufm) == writes + 2  # one POST per membership
    # What UFM recorded, in its own GUID form.
    assert ufm.pkeys[0x0101].guids == {
        "0002c90300000011": SimGuid("full", False),
        "0002c90300000021": SimGuid("full", False),
        "0002c90300000031": SimGuid("limited", False),
    }
    assert (await client.partitions())[0x0101].members == frozenset(members)
    writes = sent_writes(ufm)
    await client.add_members(0x0101, members)
    await client.add_members(0x0101, [Member(GUIDS[0].upper().replace("0X", "0x"))])
    await client.add_members(0x0101, [])
    assert sent_writes(ufm) == writes

    await client.add_members(0x0101, [Member(GUIDS[2], FULL)])  # a membership change is sent
    assert ufm.pkeys[0x0101].guids["0002c90300000031"].membership == "full"

    await client.remove_members(0x0101, [GUIDS[1], GUIDS[2], GUIDS[4]])
    assert ufm.writes()[-1] == (
        "DELETE",
        "/ufmRest/resources/pkeys/0x0101/guids/0002c90300000021,0002c90300000031",
    )
    assert (await client.partitions())[0x0101].members == frozenset({Member(GUIDS[0])})
    writes = sent_writes(ufm)
    await client.remove_members(0x0101, [GUIDS[1], GUIDS[2]])
    await client.remove_members(0x0101, [GUIDS[4]])  # never a member
    assert sent_writes(ufm) == writes

    await client.remove_pkey(0x0101)
    assert ufm.writes()[-1] == ("DELETE", "/ufmRest/resources/pkeys/0x0101")
    assert await client.partitions() == {}
    writes = sent_writes(ufm)
    await client.remove_pkey(0x0101)
    await client.remove_members(0x0101, [GUIDS[0]])
    assert sent_writes(ufm) == writes


async def test_two_tenants_on_disjoint_ports_stay_disjoint(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    await client.ensure_pkey(0x0201, "tenant-a")
    await client.ensure_pkey(0x0202, "tenant-b")
    await client.add_members(0x0201, [Member(GUIDS[0]), Member(GUIDS[2])])
    await client.add_members(0x0202, [Member(GUIDS[1]), Member(GUIDS[3], LIMITED)])
    found = await client.partitions()
    assert found[0x0201].members == frozenset({Member(GUIDS[0]), Member(GUIDS[2])})
    assert found[0x0202].members == frozenset({Member(GUIDS[1]), Member(GUIDS[3], LIMITED)})
    await client.remove_pkey(0x0201)
    assert set(await client.partitions()) == {0x0202}
    assert set(ufm.pkeys[0x0202].guids) == {"0002c90300000021", "0002c90300000041"}


async def test_refused_credentials_are_not_retryable(ufm: UfmSimulator) -> None:
    manager = UfmPartitions(URL, USERNAME, "wrong-password", timeout=2.0)
    try:
        for call in (manager.partitions(), manager.ensure_pkey(0x0301, "tenant-a")):
            with pytest.raises(UfmAuthError, match="refused the credentials") as raised:
                await call
            assert raised.value.retryable is False
    finally:
        await manager.close()
    assert 0x0301 not in ufm.pkeys


async def test_invalid_input_is_refused_before_any_request(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    seen = len(ufm.requests)
    for pkey in (0x0000, 0x7FFF, 0x8000, -1):
        for call in (
            client.ensure_pkey(pkey, "tenant-x"),
            client.add_members(pkey, [Member(GUIDS[0])]),
            client.remove_members(pkey, [GUIDS[0]]),
            client.remove_pkey(pkey),
        ):
            with pytest.raises(InvalidPartition) as raised:
                await call
            assert raised.value.retryable is False
    with pytest.raises(InvalidPartition, match="64-bit port GUID"):
        await client.add_members(0x0302, [Member("0002c903")])
    with pytest.raises(InvalidPartition, match="both full and limited"):
        await client.add_members(0x0302, [Member(GUIDS[0]), Member(GUIDS[0], LIMITED)])
    assert len(ufm.requests) == seen


async def test_members_of_a_missing_pkey_are_refused(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    writes = sent_writes(ufm)
    with pytest.raises(InvalidPartition, match="does not exist") as raised:
        await client.add_members(0x0303, [Member(GUIDS[0])])
    assert raised.value.retryable is False
    assert sent_writes(ufm) == writes and 0x0303 not in ufm.pkeys


async def test_server_errors_and_timeouts_are_retryable(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    for status in (500, 503):
        ufm.inject(status=status)
        with pytest.raises(PartitionError, match=f"UFM answered {status}") as raised:
            await client.ensure_pkey(0x0401, "tenant-a")
        assert raised.value.retryable is True
        assert not isinstance(raised.value, InvalidPartition)

    impatient = UfmPartitions(URL, USERNAME, PASSWORD, timeout=0.3)
    ufm.inject(delay=1.0)
    try:
        with pytest.raises(PartitionError, match="no answer") as raised:
            await impatient.partitions()
        assert raised.value.retryable is True
    finally:
        await impatient.close()

    refused = UfmPartitions(f"http://127.0.0.1:{NOTHING_LISTENS}", USERNAME, PASSWORD)
    try:
        with pytest.raises(PartitionError) as raised:
            await refused.partitions()
        assert raised.value.retryable is True
    finally:
        await refused.close()

    await client.ensure_pkey(0x0401, "tenant-a")  # the retry succeeds
    assert 0x0401 in ufm.pkeys


async def test_a_request_ufm_rejects_is_not_retryable(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    await client.ensure_pkey(0x0501, "tenant-a")
    ufm.inject(status=400)
    with pytest.raises(InvalidPartition, match="UFM answered 400") as raised:
        await client.add_members(0x0501, [Member(GUIDS[0])])
    assert raised.value.retryable is False


async def test_concurrent_creation_of_one_pkey_succeeds_once(
    ufm: UfmSimulator, client: UfmPartitions
) -> None:
    # Both read "absent" before either creates it: the loser's /add is refused, and its
    # re-read finds the PKey.
    other = UfmPartitions(URL, USERNAME, PASSWORD, timeout=2.0)
    seen = len(ufm.requests)
    try:
        await asyncio.gather(client.ensure_pkey(0x0601, "t"), other.ensure_pkey(0x0601, "t"))
    finally:
        await other.close()
    adds = [r for r in ufm.requests[seen:] if r == ("POST", "/ufmRest/resources/pkeys/add")]
    assert len(adds) == 2 and 0x0601 in ufm.pkeys


async def test_simulator_answers_the_guides_shapes(ufm: UfmSimulator) -> None:
    """The peer itself: PUT overwrites a PKey's GUIDs, per-GUID memberships, validation 400s."""
    auth = httpx.BasicAuth(USERNAME, PASSWORD)
    async with httpx.AsyncClient(base_url=f"{URL}/ufmRest", auth=auth, timeout=2.0) as http:
        two = ["0002c90300000011", "0x0002C90300000021"]
        body = {"pkey": "0x0701", "guids": two, "memberships": ["full", "limited"]}
        assert (await http.post("/resources/pkeys/", json=body)).status_code == 200
        put = {"pkey": "0x0701", "guids": ["0002c90300000031"], "membership": "limited"}
        assert (await http.put("/resources/pkeys", json=put)).status_code == 200
        one = (await http.get("/resources/pkeys/0x0701", params={"guids_data": "true"})).json()
        assert one["guids"] == [
            {"guid": "0002c90300000031", "membership": "limited", "index0": False}
        ]
        assert (await http.get("/resources/pkeys/0x0702")).json() == {}
        for bad in (
            {"pkey": "0x7fff", "guids": two},
            {"pkey": "0x0", "guids": two},
            {"pkey": "257", "guids": two},
            {"pkey": "0x0701", "guids": ["0002c903"]},
            {"pkey": "0x0701", "guids": two, "membership": "both"},
            {"pkey": "0x0701", "guids": two, "memberships": ["full"]},
        ):
            assert (await http.post("/resources/pkeys", json=bad)).status_code == 400, bad
        assert (await http.post("/resources/pkeys/add", json={"pkey": "0x0701"})).status_code == 400
        assert (await http.delete("/resources/pkeys/0x0701")).status_code == 200
        assert (await http.delete("/resources/pkeys/0x0701")).status_code == 404
        assert (
            await http.delete("/resources/pkeys/0x0701/guids/0002c90300000031")
        ).status_code == 404
