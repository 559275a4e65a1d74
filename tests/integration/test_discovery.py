"""Discovered nodes: a lab server that PXE boots before it is enrolled asks the boot service for
its iPXE script; the platform records its MAC (never boots it), operators list it, and enrolling
a node with that MAC accepts it. Dismissing, and the cap on how many are kept, by made-up MACs
from any client (the boot endpoints are open to the provisioning network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app as cli_app
from drivers.bmc.base import BootDevice, PowerState
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.factory import driver_for
from inventory.models import Event
from tests.platform import Platform, Ports, running_platform

PORTS = Ports(api=18610, lab_control=18611, redfish=18612, ipmi_base=19890)
CAP = 4

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def platform(
    postgres_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    async with running_platform(
        name="t_discovery", postgres_url=postgres_url, temporal_address=temporal_address,
        data_dir=tmp_path_factory.mktemp("discovery"), ports=PORTS, nodes=2, boot_delay=0.1,
        extra_settings={"discovered_nodes_max": CAP},
    ) as running:  # fmt: skip
        yield running


async def discovered(platform: Platform, token: str | None = None) -> dict[str, dict[str, Any]]:
    async with platform.api(token) as api:
        reply = await api.get("/v1/discovered-nodes")
        assert reply.status_code == 200, reply.text
        return {item["mac"]: item for item in reply.json()["items"]}


async def discovery_events(platform: Platform, mac: str) -> list[tuple[str | None, str]]:
    async with platform.sessions() as session:
        rows = await session.execute(
            select(Event.from_state, Event.to_state)
            .where(Event.kind == "discovered-node", Event.resource_id == mac)
            .order_by(Event.id)
        )
        return [(was, now) for was, now in rows]


async def pxe_boot(record: dict[str, Any]) -> None:
    """What a technician does to a new server: network boot it from its BMC."""
    driver = driver_for(BmcEndpoint(**record["bmc"]), timeout=10.0)
    try:
        await driver.power_off()
        await driver.set_boot_device(BootDevice.NETWORK)
        await driver.power_on()
        assert await driver.get_power_state() == PowerState.ON
    finally:
        await driver.close()


async def wait_discovered(platform: Platform, mac: str, boots: int) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:  # the lab's server boots a moment after power on
            found = (await discovered(platform)).get(mac)
            if found is not None and found["boots"] >= boots:
                return found
            await asyncio.sleep(0.1)


async def test_a_server_booting_before_enrollment_is_discovered_then_accepted(
    platform: Platform,
) -> None:
    records = {r["id"]: r for r in await platform.lab_nodes()}
    async with platform.api() as api:
        reply = await api.post("/v1/nodes", json=records["lab-001"])
        assert reply.status_code == 201, reply.text
    new = records["lab-002"]
    mac = new["macs"][0]
    await pxe_boot(new)
    found = await wait_discovered(platform, mac, 1)
    assert found["boots"] == 1 and found["last_address"] == "127.0.0.1", found
    assert list(await discovered(platform)) == [mac]
    await platform.wait_for_lab("lab-002", lambda n: n["last_boot_error"] is not None)
    assert "answered 404" in (await platform.lab_node("lab-002"))["last_boot_error"]  # not booted
    await pxe_boot(new)  # it keeps trying: counted, not announced again
    assert (await wait_discovered(platform, mac, 2))["boots"] == 2
    assert await discovery_events(platform, mac) == [(None, "discovered")]
    async with platform.api(platform.mint("tenant-admin", tenant="acme")) as api:
        assert (await api.get("/v1/discovered-nodes")).status_code == 403

    async with platform.api() as api:  # the operator enrolls it: accepted
        reply = await api.post("/v1/nodes", json=new)
        assert reply.status_code == 201, reply.text
    assert await discovered(platform) == {}
    assert await discovery_events(platform, mac) == [
        (None, "discovered"),
        ("discovered", "accepted"),
    ]


async def test_operators_dismiss_discovered_macs_and_at_most_the_cap_are_kept(
    platform: Platform,
) -> None:
    made_up = [f"02:00:00:00:00:{n:02x}" for n in range(CAP + 2)]
    async with httpx.AsyncClient(base_url=platform.api_url) as boot:
        for mac in made_up:
            reply = await boot.get(f"/boot/{mac}/ipxe")
            assert reply.status_code == 404 and "unknown-mac" in reply.json()["type"]
    assert sorted(await discovered(platform)) == made_up[:CAP]  # the rest were not kept
    async with platform.api(platform.mint("platform-viewer")) as api:
        assert (await api.delete(f"/v1/discovered-nodes/{made_up[0]}")).status_code == 403
    async with platform.api() as api:
        assert (await api.delete(f"/v1/discovered-nodes/{made_up[0]}")).status_code == 204
        again = await api.delete(f"/v1/discovered-nodes/{made_up[0]}")
        assert again.status_code == 404, again.text
    assert sorted(await discovered(platform)) == made_up[1:CAP]
    cli = CliRunner(env={"METALPLANE_TOKEN": platform.token})  # the operator's CLI too
    listed = await asyncio.to_thread(
        cli.invoke, cli_app, ["nodes", "discovered", "--api-url", platform.api_url]
    )
    assert listed.exit_code == 0 and made_up[1] in listed.output, listed.output
    argv = ["nodes", "discovered", "--dismiss", made_up[1], "--api-url", platform.api_url]
    dismissed = await asyncio.to_thread(cli.invoke, cli_app, argv)
    assert dismissed.exit_code == 0 and f"dismissed {made_up[1]}" in dismissed.output
    assert sorted(await discovered(platform)) == made_up[2:CAP]
    assert await discovery_events(platform, made_up[0]) == [
        (None, "discovered"), ("discovered", "dismissed"),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=platform.api_url) as boot:  # room again
        await boot.get(f"/boot/{made_up[CAP]}/ipxe")
    assert made_up[CAP] in await discovered(platform)
