"""Serial consoles through IPMI Serial-over-LAN on the simulated lab: the console relay holds
each IPMI node's SOL session (pyghmi against the lab's IPMI BMC simulator, the real
protocol); an operator streams a node's boot over the API's WebSocket and reads the boot
session's output afterwards; a Redfish node has no console (Redfish defines none); a tenant
that does not hold the node gets 404. (A console socket, on a QEMU node:
tests/integration/test_qemu_node.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import websockets.asyncio.client
import websockets.exceptions

from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18650, lab_control=18651, redfish=18652, ipmi_base=19930, console_relay=18653)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_console", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("console"), ports=PORTS, nodes=2, boot_delay=0.2,
    ) as running:  # fmt: skip
        assert await running.enroll_lab() == ["lab-001", "lab-002"]  # IPMI, Redfish
        yield running


def console(platform: Platform, node_id: str, token: str | None = None):  # type: ignore[no-untyped-def]
    return websockets.asyncio.client.connect(
        f"ws://127.0.0.1:{PORTS.api}/v1/nodes/{node_id}/console",
        additional_headers={"Authorization": f"Bearer {token or platform.token}"},
        open_timeout=30,
    )


async def test_an_operator_watches_an_ipmi_node_boot_over_serial_over_lan(
    platform: Platform,
) -> None:
    seen = b""
    async with console(platform, "lab-001") as stream:
        async with platform.api() as api:
            reply = await api.post("/v1/nodes/lab-001/provision", json={"image": "lab-sim"})
            assert reply.status_code == 202, reply.text
        async with asyncio.timeout(60):
            while b"metalplane-agent: phoned home" not in seen:
                seen += await stream.recv()  # type: ignore[operator]
    assert b"lab-sim BIOS lab-001: POST, booting from network" in seen
    assert b"PXE boot on " in seen
    node = await platform.wait_state("lab-001", {"active", "failed"})
    assert node["state"] == "active", node["last_error"]

    async with platform.api() as api:
        (log,) = [
            entry for entry in (await api.get("/v1/nodes/lab-001/console-logs")).json()
            if entry["image"] == "lab-sim"
        ]  # fmt: skip
        text = (await api.get(f"/v1/nodes/lab-001/console-logs/{log['id']}")).text
    assert "PXE boot on " in text and "metalplane-agent: phoned home" in text


async def test_a_redfish_node_has_no_console_and_other_tenants_see_none(
    platform: Platform,
) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as none:
        async with console(platform, "lab-002"):
            pass
    assert none.value.response.status_code == 409  # no-console: Redfish defines no stream
    tenant = platform.mint("tenant-admin", tenant="acme")
    with pytest.raises(websockets.exceptions.InvalidStatus) as hidden:
        async with console(platform, "lab-001", tenant):
            pass
    assert hidden.value.response.status_code == 404
