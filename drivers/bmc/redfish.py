"""Redfish power, boot-override and BIOS control with sushy.

sushy is synchronous (requests); calls run in worker threads in drivers.bmc.threads and are
bounded twice: by requests' read timeout and by asyncio.wait_for. The sushy root and System
object are cached per System URL and refreshed before each read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc
from sushy.resources.system.system import System

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
from drivers.bmc.threads import run_blocking

T = TypeVar("T")

_TARGET_FROM_REDFISH = {
    sushy.BOOT_SOURCE_TARGET_PXE: BootDevice.NETWORK,
    sushy.BOOT_SOURCE_TARGET_UEFI_HTTP: BootDevice.NETWORK,
    sushy.BOOT_SOURCE_TARGET_HDD: BootDevice.DISK,
}
_TARGET_TO_REDFISH = {
    BootDevice.NETWORK: sushy.BOOT_SOURCE_TARGET_PXE,
    BootDevice.DISK: sushy.BOOT_SOURCE_TARGET_HDD,
}

_CacheKey = tuple[str, str, str]
_systems: dict[_CacheKey, tuple[sushy.Sushy, System]] = {}
_systems_guard = threading.Lock()


def _split_system_url(url: str) -> tuple[str, str]:
    """System URL -> (scheme://host:port, /redfish/v1/Systems/<id> path)."""
    parts = urlsplit(url)
    if "/Systems/" not in parts.path:
        raise ValueError(f"not a Redfish System URL: {url}")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def classify_redfish(exc: Exception, *, what: str) -> BmcError:
    if isinstance(exc, BmcError):
        return exc
    if isinstance(exc, sushy_exc.AccessError):
        return BmcAuthError(f"{what}: Redfish refused the credentials ({exc.status_code})")
    if isinstance(exc, sushy_exc.ServerSideError):
        return BmcRejected(f"{what}: BMC answered {exc.status_code}: {exc}")
    if isinstance(exc, sushy_exc.ConnectionError):
        return BmcUnreachable(f"{what}: {exc}")
    if isinstance(exc, sushy_exc.ResourceNotFoundError):
        return BmcRejected(f"{what}: {exc}", retryable=False)
    if isinstance(exc, (sushy_exc.MissingAttributeError, sushy_exc.MissingActionError)):
        return BmcUnsupported(f"{what}: {exc}")
    if isinstance(exc, sushy_exc.HTTPError):
        return BmcRejected(f"{what}: BMC answered {exc.status_code}: {exc}", retryable=False)
    if isinstance(exc, sushy_exc.SushyError):
        return BmcRejected(f"{what}: {exc}", retryable=False)
    return BmcUnreachable(f"{what}: {type(exc).__name__}: {exc}")


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
        self._base_url, self._system_path = _split_system_url(endpoint.address)
        self._key: _CacheKey = (endpoint.address, endpoint.username, endpoint.password)

    def __repr__(self) -> str:
        return f"RedfishDriver({self.endpoint.address})"

    # -- connection handling (worker threads) -----------------------------------------------

    def _connect(self) -> tuple[sushy.Sushy, System]:
        root = sushy.Sushy(
            self._base_url,
            auth=sushy_auth.BasicAuth(self.endpoint.username, self.endpoint.password),
            verify=self.endpoint.verify_tls,
            # 5xx surfaces at once as BmcRejected: retry policy belongs to the workflow.
            server_side_retries=0,
            server_side_retries_delay=0,
            read_timeout=max(1, int(self.timeout)),
            connect_timeout=min(5, max(1, int(self.timeout))),
        )
        return root, root.get_system(self._system_path)

    def _system(self, *, fresh: bool) -> System:
        with _systems_guard:
            cached = _systems.get(self._key)
        if cached is None:
            root, system = self._connect()
            with _systems_guard:
                _systems[self._key] = (root, system)
            return system
        system = cached[1]
        if fresh:
            system.refresh(force=True)
        return system

    def _run(self, what: str, op: Callable[[System], T], *, fresh: bool = True) -> T:
        try:
            return op(self._system(fresh=fresh))
        except Exception as exc:
            if isinstance(exc, (sushy_exc.ConnectionError, sushy_exc.AccessError)):
                # Drop the cached root: the next call reconnects (BMC restart, new password).
                with _systems_guard:
                    _systems.pop(self._key, None)
            raise classify_redfish(exc, what=what) from exc

    async def _call(self, what: str, op: Callable[[System], T], *, fresh: bool = True) -> T:
        try:
            return await asyncio.wait_for(
                run_blocking(self._run, what, op, fresh=fresh), timeout=self.timeout
            )
        except TimeoutError as exc:
            raise BmcUnreachable(f"{what}: no answer from {self!r} in {self.timeout}s") from exc

    # -- power ------------------------------------------------------------------------------

    async def get_power_state(self) -> PowerState:
        state = await self._call("get power state", lambda s: s.power_state)
        # PoweringOn counts as on, PoweringOff as off: the transition is committed.
        if state in (sushy.SYSTEM_POWER_STATE_ON, sushy.SYSTEM_POWER_STATE_POWERING_ON):
            return PowerState.ON
        return PowerState.OFF

    async def _reset(self, what: str, reset_type: sushy.ResetType) -> None:
        await self._call(what, lambda s: s.reset_system(reset_type), fresh=False)

    async def power_on(self) -> None:
        if await self.get_power_state() is PowerState.ON:
            return
        await self._reset("power on", sushy.RESET_ON)

    async def power_off(self, *, soft: bool = False) -> None:
        if await self.get_power_state() is PowerState.OFF:
            return
        if soft:
            await self._reset("graceful shutdown", sushy.RESET_GRACEFUL_SHUTDOWN)
            deadline = time.monotonic() + self.soft_off_wait
            while time.monotonic() < deadline:
                await asyncio.sleep(self.poll_interval)
                if await self.get_power_state() is PowerState.OFF:
                    return
        await self._reset("power off", sushy.RESET_FORCE_OFF)

    async def reset(self) -> None:
        if await self.get_power_state() is PowerState.OFF:
            await self._reset("power on (reset of an off node)", sushy.RESET_ON)
            return
        await self._reset("reset", sushy.RESET_FORCE_RESTART)

    # -- boot device ------------------------------------------------------------------------

    async def get_boot_device(self) -> BootSetting:
        def op(s: System) -> BootSetting:
            enabled = s.boot.enabled
            if enabled in (None, sushy.BOOT_SOURCE_ENABLED_DISABLED):
                return BootSetting(BootDevice.NONE, persistent=False)
            device = _TARGET_FROM_REDFISH.get(s.boot.target, BootDevice.NONE)
            return BootSetting(device, persistent=enabled == sushy.BOOT_SOURCE_ENABLED_CONTINUOUS)

        return await self._call("get boot device", op)

    async def set_boot_device(self, device: BootDevice, *, persistent: bool = False) -> None:
        device = BootDevice(device)

        def op(s: System) -> None:
            if device is BootDevice.NONE:
                s.set_system_boot_options(enabled=sushy.BOOT_SOURCE_ENABLED_DISABLED)
                return
            enabled = sushy.BOOT_SOURCE_ENABLED_ONCE
            if persistent:
                enabled = sushy.BOOT_SOURCE_ENABLED_CONTINUOUS
            s.set_system_boot_options(target=_TARGET_TO_REDFISH[device], enabled=enabled)

        await self._call(f"set boot device {device}", op)

    # -- BIOS -------------------------------------------------------------------------------

    async def get_bios_attributes(self) -> dict[str, str]:
        def op(s: System) -> dict[str, str]:
            bios = s.bios
            bios.refresh(force=True)
            return {str(k): str(v) for k, v in (bios.attributes or {}).items()}

        return await self._call("get BIOS attributes", op)

    async def apply_bios_attributes(self, changes: dict[str, str]) -> None:
        if not changes:
            return
        # Targets Bios/Settings: real BMCs stage it until the next reboot (the caller resets).
        await self._call("apply BIOS attributes", lambda s: s.bios.set_attributes(dict(changes)))

    async def close(self) -> None:
        # The cached root is shared with later drivers of the same System; nothing to free.
        return None


def drop_cached_systems() -> None:
    """Forget every cached sushy root (tests, credential rotation)."""
    with _systems_guard:
        _systems.clear()
