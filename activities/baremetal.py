"""Bare-metal activities: power, boot device and BIOS through the node's BMC.

Each one reads the BMC's current state and acts only on a difference, so a retry or an SRE
reset never repeats a side effect. BMC credentials are read from the inventory here and never
pass through workflow history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

import images
from drivers.bmc.base import BmcDriver, BmcError, BootDevice, PowerState
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.factory import driver_for
from inventory import nodes
from inventory.errors import InventoryError

from .errors import bad_input, bmc_failure, inventory_failure
from .heartbeat import piece


@dataclass
class PowerRequest:
    node_id: str
    state: str  # "on" | "off"
    soft: bool = False


@dataclass
class BootDeviceRequest:
    node_id: str
    device: str  # BootDevice value
    persistent: bool = False


@dataclass
class PrepareNetworkBoot:
    node_id: str
    vendor: str
    tuning_profile: str


@dataclass
class PreparedBoot:
    """What prepare_network_boot had to change (all False/empty on a repeat)."""

    powered_off: bool
    bios_changes: dict[str, str]
    boot_device_set: bool


async def _ensure_power(driver: BmcDriver, wanted: PowerState, *, soft: bool = False) -> bool:
    if await driver.get_power_state() == wanted:
        return False
    if wanted == PowerState.ON:
        await driver.power_on()
    else:
        await driver.power_off(soft=soft)
    return True


async def _ensure_boot_device(driver: BmcDriver, wanted: BootDevice, *, persistent: bool) -> bool:
    current = await driver.get_boot_device()
    if current.device == wanted and (wanted == BootDevice.NONE or current.persistent == persistent):
        return False
    await driver.set_boot_device(wanted, persistent=persistent)
    return True


async def _ensure_bios(driver: BmcDriver, vendor: str, tuning_profile: str) -> dict[str, str]:
    current = await driver.get_bios_attributes()
    try:
        wanted = images.bios_attributes_for(
            images.get_profile(tuning_profile), vendor, present=current
        )
    except images.ImagesError as exc:
        raise bad_input(str(exc), type(exc).__name__) from exc
    changes = {
        name: value for name, value in wanted.items() if str(current.get(name)) != str(value)
    }
    if changes:
        await driver.apply_bios_attributes(changes)
    return changes


class BaremetalActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        bmc_timeout: float,
        max_concurrent_per_host: int,
    ) -> None:
        self._sessions = sessions
        self._timeout = bmc_timeout
        self._per_host = max_concurrent_per_host

    async def _driver(self, node_id: str) -> BmcDriver:
        try:
            async with self._sessions() as session:
                bmc = await nodes.get_bmc_access(session, node_id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        endpoint = BmcEndpoint(
            protocol=bmc.protocol,  # type: ignore[arg-type]
            address=bmc.address,
            username=bmc.username,
            password=bmc.password,
            redfish_address=bmc.redfish_address,
        )
        return driver_for(endpoint, timeout=self._timeout, max_concurrent_per_host=self._per_host)

    @activity.defn(name="ensure_power")
    async def ensure_power(self, request: PowerRequest) -> bool:
        """Bring the node to the power state asked for; True if a command was sent."""
        driver = await self._driver(request.node_id)
        try:
            return await piece(_ensure_power(driver, PowerState(request.state), soft=request.soft))
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()

    @activity.defn(name="ensure_boot_device")
    async def ensure_boot_device(self, request: BootDeviceRequest) -> bool:
        """Set the boot device unless it is already set that way; True if a command was sent."""
        driver = await self._driver(request.node_id)
        try:
            return await piece(
                _ensure_boot_device(
                    driver, BootDevice(request.device), persistent=request.persistent
                )
            )
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()

    @activity.defn(name="prepare_network_boot")
    async def prepare_network_boot(self, request: PrepareNetworkBoot) -> PreparedBoot:
        """Power off, apply the BIOS attributes of the tuning profile that differ, and set a
        one-time network boot. Each step compares before it acts, and none undoes another, so
        a retry after any partial run only finishes the job."""
        driver = await self._driver(request.node_id)
        try:
            # Three pieces: a cancellation stops between two, never inside one.
            powered_off = await piece(_ensure_power(driver, PowerState.OFF))
            bios_changes = await piece(_ensure_bios(driver, request.vendor, request.tuning_profile))
            boot_device_set = await piece(
                _ensure_boot_device(driver, BootDevice.NETWORK, persistent=False)
            )
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()
        return PreparedBoot(powered_off, bios_changes, boot_device_set)
