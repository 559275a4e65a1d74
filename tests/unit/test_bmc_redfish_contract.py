"""RedfishDriver against a BMC whose resources differ from the lab emulator's: a Bios resource
without @Redfish.Settings (written directly, DSP0266), a vendor Reset target, Redfish error
messages and a moved ETag (412). A small aiohttp server on a pinned port plays that BMC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from drivers.bmc.base import BmcAuthError, BmcRejected, PowerState
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.redfish import RedfishDriver, close_pooled_sessions

PORT = 18161
SYSTEM = "/redfish/v1/Systems/1"


class FakeBmc:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.power = "Off"
        self.bios = {"ProcC6": "Enabled"}
        self.next_status: int | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != "Basic YWRtaW46c2VjcmV0":  # admin:secret
            return web.json_response({}, status=401)
        if self.next_status is not None:
            status, self.next_status = self.next_status, None
            error = {"@Message.ExtendedInfo": [{"Message": "The resource has changed."}]}
            return web.json_response({"error": error}, status=status)
        if request.method == "GET" and request.path == SYSTEM:
            return web.json_response(
                {
                    "PowerState": self.power,
                    "Boot": {"BootSourceOverrideEnabled": "Disabled"},
                    "Bios": {"@odata.id": f"{SYSTEM}/Bios"},
                    "Actions": {"#ComputerSystem.Reset": {"target": "/oem/reset/1"}},
                }
            )
        if request.method == "POST" and request.path == "/oem/reset/1":
            self.power = "On" if body["ResetType"] == "On" else "Off"
            return web.Response(status=204)
        if request.path == f"{SYSTEM}/Bios":
            if request.method == "PATCH":
                self.bios.update(body["Attributes"])
                return web.Response(status=204)
            return web.json_response({"Attributes": self.bios})  # no @Redfish.Settings
        return web.json_response({}, status=404)


@pytest_asyncio.fixture(loop_scope="session")
async def bmc() -> AsyncIterator[FakeBmc]:
    fake = FakeBmc()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", PORT)
    await site.start()
    yield fake
    await close_pooled_sessions()
    await runner.cleanup()


def driver(password: str = "secret") -> RedfishDriver:
    return RedfishDriver(
        BmcEndpoint("redfish", f"http://127.0.0.1:{PORT}{SYSTEM}", "admin", password),
        timeout=5.0,
    )


async def test_reset_goes_to_the_advertised_target(bmc: FakeBmc) -> None:
    await driver().power_on()
    assert bmc.power == "On"
    assert ("POST", "/oem/reset/1", {"ResetType": "On"}) in bmc.requests
    assert await driver().get_power_state() is PowerState.ON


async def test_bios_without_settings_object_is_patched_directly(bmc: FakeBmc) -> None:
    await driver().apply_bios_attributes({"ProcC6": "Disabled"})
    assert bmc.bios == {"ProcC6": "Disabled"}
    patches = [r for r in bmc.requests if r[0] == "PATCH"]
    assert patches == [("PATCH", f"{SYSTEM}/Bios", {"Attributes": {"ProcC6": "Disabled"}})]


async def test_errors_carry_the_bmc_message_and_retryability(bmc: FakeBmc) -> None:
    bmc.next_status = 412
    with pytest.raises(BmcRejected) as moved:
        await driver().get_power_state()
    assert moved.value.retryable and "The resource has changed." in str(moved.value)
    bmc.next_status = 400
    with pytest.raises(BmcRejected) as bad:
        await driver().get_power_state()
    assert not bad.value.retryable
    with pytest.raises(BmcAuthError):
        await driver(password="wrong").get_power_state()
