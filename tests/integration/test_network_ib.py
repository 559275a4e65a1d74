"""Tenant networks on InfiniBand, through the API and the network workflows, against an
unmodified OpenSM managing an ibsim fabric: after attach, the nodes' ports hold exactly the
tenant's PKey as full members (read back with smpquery); after detach, and after the node is
released, they no longer do; deleting the network removes its partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update

from inventory.models import Node
from lab.ib.smp import pkey_entries
from lab.ib.subnet import IbSubnet
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18245, lab_control=18345, redfish=18346, ipmi_base=19645)
DEFAULT = 0xFFFF
FULL = 0x8000
NODES = {"lab-001": "gpu-001", "lab-002": "gpu-002", "lab-003": "gpu-003"}


@pytest.fixture(scope="module")
def subnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IbSubnet]:
    lab = IbSubnet(tmp_path_factory.mktemp("ib"), nodes=len(NODES))
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
    subnet: IbSubnet,
) -> AsyncIterator[Platform]:
    ib = {"ib_backend": "opensm", "opensm_partitions_file": subnet.partitions_file,
          "opensm_pid_file": subnet.opensm_pid_file}  # fmt: skip
    async with running_platform(
        name="t_network_ib", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("network-ib"), ports=PORTS, nodes=len(NODES),
        extra_settings=ib,
    ) as running:  # fmt: skip
        await running.enroll_lab()
        async with running.api(running.mint("platform-admin")) as api:
            assert (
                await api.post("/v1/tenants", json={"id": "acme", "display_name": "A"})
            ).is_success
            for node_id, hca in NODES.items():
                cabled = await api.put(
                    f"/v1/nodes/{node_id}/cabling", json={"ib_guids": [subnet.ports[hca].port_guid]}
                )
                assert cabled.status_code == 200, cabled.text
        async with running.sessions.begin() as session:
            await session.execute(
                update(Node).where(Node.id.in_(NODES)).values(tenant_id="acme", state="active")
            )
        yield running


def tables(subnet: IbSubnet) -> dict[str, set[int]]:
    return {node: pkey_entries(subnet.pkey_table(hca)) for node, hca in NODES.items()}


async def tables_become(subnet: IbSubnet, wanted: dict[str, set[int]]) -> None:
    """OpenSM applies a partition change at its next sweep, after the workflow has signalled it."""
    seen: dict[str, set[int]] = {}

    async def settled() -> bool:
        seen.update(tables(subnet))
        return all(seen[node] == pkeys for node, pkeys in wanted.items())

    try:
        await eventually(settled, 30)
    except TimeoutError:
        raise AssertionError(f"PKey tables {seen}, wanted {wanted}") from None


async def eventually(check: Any, timeout: float = 60) -> None:
    """Until `check()` holds: the test watches a workflow's effect from outside."""
    async with asyncio.timeout(timeout):
        done = await check()
        while not done:
            await asyncio.sleep(0.2)
            done = await check()


async def test_attach_detach_release_and_delete_move_ib_ports(
    platform: Platform, subnet: IbSubnet
) -> None:
    assert all(t == {DEFAULT} for t in tables(subnet).values())
    async with platform.api(platform.mint("tenant-admin", tenant="acme", subject="ada")) as api:
        network = (await api.post("/v1/networks", json={"name": "ib-lan"})).json()
        network_url = f"/v1/networks/{network['id']}"

        async def ready() -> bool:
            return (await api.get(network_url)).json()["state"] == "ready"

        await eventually(ready)
        pkey = network["pkey"]
        assert f"{pkey:#06x}" in subnet.partitions_file.read_text()
        for node_id in ("lab-001", "lab-002"):
            reply = await api.post(f"{network_url}/attachments", json={"node_id": node_id})
            assert reply.status_code == 202, reply.text

        async def both_attached() -> bool:
            items = (await api.get(f"{network_url}/attachments")).json()["items"]
            return [a["state"] for a in items] == ["attached", "attached"]

        await eventually(both_attached)
        await tables_become(subnet, {
            "lab-001": {DEFAULT, pkey | FULL},
            "lab-002": {DEFAULT, pkey | FULL},
            "lab-003": {DEFAULT},  # not attached: not in the partition
        })  # fmt: skip

        assert (await api.delete(f"{network_url}/attachments/lab-001")).status_code == 202

        await tables_become(subnet, {"lab-001": {DEFAULT}})

    # Releasing a node takes it out of its tenant network as well.
    async with platform.api() as api:
        released = await api.post("/v1/nodes/lab-002/release")
        assert released.status_code == 202, released.text
    outcome = await platform.client.get_workflow_handle(released.json()["workflow_id"]).result()
    assert outcome["state"] == "available"  # the result as JSON: no type hint given
    await tables_become(subnet, {"lab-002": {DEFAULT}})

    async with platform.api(platform.mint("tenant-admin", tenant="acme", subject="ada")) as api:
        assert (await api.get(f"{network_url}/attachments")).json()["items"] == []
        assert (await api.delete(network_url)).status_code == 202

        async def gone() -> bool:
            return (await api.get(network_url)).status_code == 404

        await eventually(gone)
    assert f"{pkey:#06x}" not in subnet.partitions_file.read_text()
    await tables_become(subnet, {node: {DEFAULT} for node in NODES})
