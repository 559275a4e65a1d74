"""Bare-metal activities: power, boot device and BIOS through the node's BMC.

The power they bring a node to is recorded in the inventory: what the power-state sync
(activities/power_sync.py) compares the BMC's reading with.

Each one reads the BMC's current state and acts only on a difference, so a retry or an SRE
reset never repeats a side effect. BMC credentials are read from the inventory here and never
pass through workflow history.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

import images
from core.contracts import PowerSyncSummary
from drivers.bmc.base import BmcDriver, BmcError, BootDevice, PowerState
from drivers.bmc.endpoint import BmcEndpoint
from drivers.bmc.factory import driver_for
from inventory import nodes, power
from inventory.errors import InventoryError

from . import power_sync
from .errors import bad_input, bmc_failure, inventory_failure
from .heartbeat import piece
from .power_sync import PowerSyncBatch


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


async def open_driver(
    sessions: async_sessionmaker[AsyncSession], node_id: str, *, timeout: float, per_host: int
) -> BmcDriver:
    """The node's BMC driver, its credentials read from the inventory (InventoryError)."""
    async with sessions() as session:
        bmc = await nodes.get_bmc_access(session, node_id)
    endpoint = BmcEndpoint(
        protocol=bmc.protocol,  # type: ignore[arg-type]
        address=bmc.address,
        username=bmc.username,
        password=bmc.password,
        redfish_address=bmc.redfish_address,
    )
    return driver_for(endpoint, timeout=timeout, max_concurrent_per_host=per_host)


class BaremetalActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        bmc_timeout: float,
        max_concurrent_per_host: int,
        power_sync_concurrency: int = 20,
    ) -> None:
        self._sessions = sessions
        self._timeout = bmc_timeout
        self._per_host = max_concurrent_per_host
        self._sync_concurrency = power_sync_concurrency

    async def _open(self, node_id: str) -> BmcDriver:
        return await open_driver(
            self._sessions, node_id, timeout=self._timeout, per_host=self._per_host
        )

    async def _driver(self, node_id: str) -> BmcDriver:
        try:
            return await self._open(node_id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc

    async def _record(self, node_id: str, state: PowerState) -> None:
        async with self._sessions.begin() as session:
            await power.record_power(session, node_id, state.value)

    @activity.defn(name="ensure_power")
    async def ensure_power(self, request: PowerRequest) -> bool:
        """Bring the node to the power state asked for, and record it; True if a command was
        sent."""
        driver = await self._driver(request.node_id)
        wanted = PowerState(request.state)
        try:
            sent = await piece(_ensure_power(driver, wanted, soft=request.soft))
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()
        await self._record(request.node_id, wanted)
        return sent

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

    @activity.defn(name="read_bmc_firmware")
    async def read_bmc_firmware(self, node_id: str) -> str:
        """The node's BMC firmware version, as its BMC reports it (a read: safe to repeat)."""
        driver = await self._driver(node_id)
        try:
            return await driver.get_bmc_firmware_version()
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
            await self._record(request.node_id, PowerState.OFF)
            bios_changes = await piece(_ensure_bios(driver, request.vendor, request.tuning_profile))
            boot_device_set = await piece(
                _ensure_boot_device(driver, BootDevice.NETWORK, persistent=False)
            )
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()
        return PreparedBoot(powered_off, bios_changes, boot_device_set)

    @activity.defn(name="list_nodes_for_power_sync")
    async def list_nodes_for_power_sync(self) -> list[str]:
        """The nodes no operation holds: what the power-state sync reads."""
        return await power_sync.list_nodes(self._sessions)

    @activity.defn(name="sync_power_states")
    async def sync_power_states(self, batch: PowerSyncBatch) -> PowerSyncSummary:
        """Read each node's power, record drift and BMCs that stop answering, act by policy."""
        return await power_sync.sync_batch(
            self._sessions, self._open, batch, concurrency=self._sync_concurrency
        )
