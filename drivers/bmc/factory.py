"""Build the driver for a node's BMC, with a per-BMC concurrency limit in front of it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from drivers.bmc.base import BmcDriver, BootDevice, BootSetting, PowerState
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.ipmi import IpmiDriver
from drivers.bmc.redfish import RedfishDriver

T = TypeVar("T")

# One semaphore per BMC (host:port) and event loop: BMCs fall over under parallel sessions,
# and many activities for one node (or one chassis manager) may run at once.
_semaphores: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


def host_semaphore(key: str, limit: int) -> asyncio.Semaphore:
    per_loop = _semaphores.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault((key, limit), asyncio.Semaphore(limit))


class LimitedDriver:
    """Wraps a BmcDriver so at most `limit` calls per BMC run at the same time."""

    def __init__(self, inner: IpmiDriver | RedfishDriver, key: str, limit: int) -> None:
        self.inner = inner
        self._key = key
        self._limit = limit

    def __repr__(self) -> str:
        return f"LimitedDriver({self.inner!r}, limit={self._limit})"

    async def _limited(self, call: Callable[[], Awaitable[T]]) -> T:
        async with host_semaphore(self._key, self._limit):
            return await call()

    async def get_power_state(self) -> PowerState:
        return await self._limited(self.inner.get_power_state)

    async def power_on(self) -> None:
        await self._limited(self.inner.power_on)

    async def power_off(self, *, soft: bool = False) -> None:
        await self._limited(lambda: self.inner.power_off(soft=soft))

    async def reset(self) -> None:
        await self._limited(self.inner.reset)

    async def get_boot_device(self) -> BootSetting:
        return await self._limited(self.inner.get_boot_device)

    async def set_boot_device(self, device: BootDevice, *, persistent: bool = False) -> None:
        await self._limited(lambda: self.inner.set_boot_device(device, persistent=persistent))

    async def get_bios_attributes(self) -> dict[str, str]:
        return await self._limited(self.inner.get_bios_attributes)

    async def apply_bios_attributes(self, changes: dict[str, str]) -> None:
        await self._limited(lambda: self.inner.apply_bios_attributes(changes))

    async def get_bmc_firmware_version(self) -> str:
        return await self._limited(self.inner.get_bmc_firmware_version)

    async def close(self) -> None:
        await self.inner.close()


def driver_for(
    endpoint: BmcEndpoint, *, timeout: float = 20.0, max_concurrent_per_host: int = 4
) -> BmcDriver:
    """The driver for endpoint.protocol. Cheap: sessions are cached underneath."""
    inner: IpmiDriver | RedfishDriver
    if endpoint.protocol == "ipmi":
        inner = IpmiDriver(endpoint, timeout=timeout)
    elif endpoint.protocol == "redfish":
        inner = RedfishDriver(endpoint, timeout=timeout)
    else:
        raise ValueError(f"unknown BMC protocol {endpoint.protocol!r}")
    return LimitedDriver(inner, endpoint.limit_key, max_concurrent_per_host)
