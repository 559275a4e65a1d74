"""Redfish power, boot-override and BIOS control over async HTTP (aiohttp).

Only DMTF-standard resources are used: the ComputerSystem (PowerState, Boot override, the
ComputerSystem.Reset action) and its Bios resource with its @Redfish.Settings object. Each
interface call costs one GET, plus one PATCH or POST when it acts; sushy (synchronous, and it
re-reads every cached sub-resource on each refresh) cost 2-3 times as many round trips.

HTTP sessions are pooled per BMC and event loop (keep-alive); action and settings URIs learned
from the System and Bios resources are cached per System URL. aiohttp costs under half the CPU
of httpx per request, which matters when one worker drives thousands of BMCs.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from drivers.bmc.base import (
    BmcAuthError,
    BmcError,
    BmcRejected,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    BootSetting,
    PowerState,
)
from drivers.bmc.endpoint import BmcEndpoint

_TARGET_FROM_REDFISH = {
    "Pxe": BootDevice.NETWORK,
    "UefiHttp": BootDevice.NETWORK,
    "Hdd": BootDevice.DISK,
}
_TARGET_TO_REDFISH = {BootDevice.NETWORK: "Pxe", BootDevice.DISK: "Hdd"}
_ON_STATES = ("On", "PoweringOn")  # a committed transition counts as its end state
_RESET_ACTION = "#ComputerSystem.Reset"


@dataclass
class _Links:
    """URIs a System advertises; stable for the life of the BMC firmware."""

    reset: str | None = None
    bios: str | None = None
    bios_read: bool = False  # bios_settings is known once the Bios resource has been read
    bios_settings: str | None = None


_ClientKey = tuple[str, str, str, bool]
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_ClientKey, aiohttp.ClientSession]
] = weakref.WeakKeyDictionary()
_links: dict[str, _Links] = {}


def _system_path(url: str) -> tuple[str, str]:
    """System URL -> (scheme://host:port, /redfish/v1/Systems/<id> path)."""
    parts = urlsplit(url)
    if "/Systems/" not in parts.path:
        raise ValueError(f"not a Redfish System URL: {url}")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def _client(endpoint: BmcEndpoint, base_url: str) -> aiohttp.ClientSession:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (base_url, endpoint.username, endpoint.password, endpoint.verify_tls)
    client = per_loop.get(key)
    if client is None or client.closed:
        client = aiohttp.ClientSession(
            base_url=base_url,
            headers={
                "Authorization": aiohttp.encode_basic_auth(endpoint.username, endpoint.password),
                "Accept": "application/json",
                "OData-Version": "4.0",
            },
            connector=aiohttp.TCPConnector(limit=8, ssl=None if endpoint.verify_tls else False),
        )
        per_loop[key] = client
    return client


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _message(reply: _Reply) -> str:
    """The BMC's own words: Redfish error messages, else the start of the body."""
    try:
        error = reply.json().get("error", {})
        messages = [
            m.get("Message") for m in error.get("@Message.ExtendedInfo", []) if m.get("Message")
        ]
        return "; ".join(messages) or str(error.get("message") or "")
    except (ValueError, AttributeError):
        return reply.body[:200].decode(errors="replace")


def classify_reply(reply: _Reply, *, what: str) -> BmcError:
    status = reply.status
    detail = f"{what}: BMC answered {status} {_message(reply)}".rstrip()
    if status in (401, 403):
        return BmcAuthError(f"{what}: Redfish refused the credentials ({status})")
    if status >= 500 or status in (409, 412, 429):
        # Busy, conflicting with a running task, or an ETag that moved: worth another try.
        return BmcRejected(detail)
    return BmcRejected(detail, retryable=False)


class RedfishDriver:
    """BmcDriver over Redfish (one ComputerSystem)."""

    def __init__(
        self,
        endpoint: BmcEndpoint,
        *,
        timeout: float = 20.0,
        soft_off_wait: float = 10.0,
        poll_interval: float = 0.5,
    ) -> None:
        if endpoint.protocol != "redfish":
            raise ValueError(f"RedfishDriver needs a redfish endpoint, got {endpoint.protocol}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.soft_off_wait = soft_off_wait
        self.poll_interval = poll_interval
        self._base_url, self._path = _system_path(endpoint.address)
        self._links = _links.setdefault(endpoint.address.rstrip("/"), _Links())

    def __repr__(self) -> str:
        return f"RedfishDriver({self.endpoint.address})"

    # -- HTTP -------------------------------------------------------------------------------

    async def _request(
        self, what: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> _Reply:
        client = _client(self.endpoint, self._base_url)
        try:
            async with asyncio.timeout(self.timeout):
                async with client.request(method, path, json=body) as response:
                    reply = _Reply(response.status, await response.read())
        except TimeoutError as exc:
            raise BmcUnreachable(f"{what}: no answer from {self!r} in {self.timeout}s") from exc
        except aiohttp.ClientError as exc:
            raise BmcUnreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
        if reply.status >= 400:
            raise classify_reply(reply, what=what)
        return reply

    async def _get(self, what: str, path: str) -> dict[str, Any]:
        reply = await self._request(what, "GET", path)
        try:
            document = reply.json()
        except ValueError as exc:
            raise BmcRejected(f"{what}: BMC sent no JSON document", retryable=False) from exc
        if not isinstance(document, dict):
            raise BmcRejected(f"{what}: BMC sent no JSON object", retryable=False)
        return document

    async def _system(self, what: str) -> dict[str, Any]:
        system = await self._get(what, self._path)
        reset = system.get("Actions", {}).get(_RESET_ACTION, {}).get("target")
        self._links.reset = reset or f"{self._path}/Actions/ComputerSystem.Reset"
        self._links.bios = system.get("Bios", {}).get("@odata.id")
        return system

    # -- power ------------------------------------------------------------------------------

    async def get_power_state(self) -> PowerState:
        system = await self._system("get power state")
        return PowerState.ON if system.get("PowerState") in _ON_STATES else PowerState.OFF

    async def _reset(self, what: str, reset_type: str) -> None:
        if self._links.reset is None:
            await self._system(what)
        assert self._links.reset is not None
        await self._request(what, "POST", self._links.reset, {"ResetType": reset_type})

    async def power_on(self) -> None:
        if await self.get_power_state() is PowerState.ON:
            return
        await self._reset("power on", "On")

    async def power_off(self, *, soft: bool = False) -> None:
        if await self.get_power_state() is PowerState.OFF:
            return
        if soft:
            await self._reset("graceful shutdown", "GracefulShutdown")
            deadline = time.monotonic() + self.soft_off_wait
            while time.monotonic() < deadline:
                await asyncio.sleep(self.poll_interval)
                if await self.get_power_state() is PowerState.OFF:
                    return
        await self._reset("power off", "ForceOff")

    async def reset(self) -> None:
        if await self.get_power_state() is PowerState.OFF:
            await self._reset("power on (reset of an off node)", "On")
            return
        await self._reset("reset", "ForceRestart")

    # -- boot device ------------------------------------------------------------------------

    async def get_boot_device(self) -> BootSetting:
        boot = (await self._system("get boot device")).get("Boot") or {}
        enabled = boot.get("BootSourceOverrideEnabled")
        if enabled in (None, "Disabled"):
            return BootSetting(BootDevice.NONE, persistent=False)
        device = _TARGET_FROM_REDFISH.get(boot.get("BootSourceOverrideTarget"), BootDevice.NONE)
        return BootSetting(device, persistent=enabled == "Continuous")

    async def set_boot_device(self, device: BootDevice, *, persistent: bool = False) -> None:
        device = BootDevice(device)
        if device is BootDevice.NONE:
            boot: dict[str, str] = {"BootSourceOverrideEnabled": "Disabled"}
        else:
            boot = {
                "BootSourceOverrideTarget": _TARGET_TO_REDFISH[device],
                "BootSourceOverrideEnabled": "Continuous" if persistent else "Once",
            }
        await self._request(f"set boot device {device}", "PATCH", self._path, {"Boot": boot})

    # -- management -------------------------------------------------------------------------

    async def get_bmc_firmware_version(self) -> str:
        what = "get BMC firmware version"
        managers = (await self._system(what)).get("Links", {}).get("ManagedBy") or []
        if not managers or "@odata.id" not in managers[0]:
            raise BmcUnsupported(f"{what}: {self!r} links no manager (Links.ManagedBy)")
        manager = await self._get(what, managers[0]["@odata.id"])
        version = manager.get("FirmwareVersion")
        if not version:
            raise BmcUnsupported(f"{what}: its manager reports no FirmwareVersion")
        return str(version)

    # -- BIOS -------------------------------------------------------------------------------

    async def _bios_path(self, what: str) -> str:
        if self._links.bios is None:
            await self._system(what)
        if self._links.bios is None:
            raise BmcUnsupported(f"{what}: {self!r} has no Bios resource")
        return self._links.bios

    async def get_bios_attributes(self) -> dict[str, str]:
        what = "get BIOS attributes"
        bios = await self._get(what, await self._bios_path(what))
        settings = bios.get("@Redfish.Settings", {}).get("SettingsObject", {}).get("@odata.id")
        self._links.bios_settings = settings
        self._links.bios_read = True
        return {str(k): str(v) for k, v in (bios.get("Attributes") or {}).items()}

    async def apply_bios_attributes(self, changes: dict[str, str]) -> None:
        if not changes:
            return
        what = "apply BIOS attributes"
        bios = await self._bios_path(what)
        if not self._links.bios_read:
            await self.get_bios_attributes()
        # BMCs stage the Settings object until the next reboot (the workflow powers on next);
        # a Bios resource without @Redfish.Settings is written directly (DMTF DSP0266).
        target = self._links.bios_settings or bios
        await self._request(what, "PATCH", target, {"Attributes": dict(changes)})

    async def close(self) -> None:
        # The pooled client serves later drivers of the same BMC; nothing to free.
        return None


async def close_pooled_sessions() -> None:
    """Close this event loop's pooled HTTP sessions (worker shutdown)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.close()
