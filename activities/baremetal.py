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
class BiosRequest:
    node_id: str
    vendor: str
    tuning_profile: str


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
                node = await nodes.get(session, node_id)
        except InventoryError as exc:
            raise inventory_failure(exc) from exc
        endpoint = BmcEndpoint(
            protocol=node.bmc_protocol,  # type: ignore[arg-type]
            address=node.bmc_address,
            username=node.bmc_username,
            password=node.bmc_password,
            redfish_address=node.bmc_redfish_address,
        )
        return driver_for(endpoint, timeout=self._timeout, max_concurrent_per_host=self._per_host)

    @activity.defn(name="ensure_power")
    async def ensure_power(self, request: PowerRequest) -> bool:
        """Bring the node to the power state asked for; True if a command was sent."""
        wanted = PowerState(request.state)
        driver = await self._driver(request.node_id)
        try:
            if await driver.get_power_state() == wanted:
                return False
            if wanted == PowerState.ON:
                await driver.power_on()
            else:
                await driver.power_off(soft=request.soft)
            return True
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()

    @activity.defn(name="ensure_boot_device")
    async def ensure_boot_device(self, request: BootDeviceRequest) -> bool:
        wanted = BootDevice(request.device)
        driver = await self._driver(request.node_id)
        try:
            current = await driver.get_boot_device()
            if current.device == wanted and (
                wanted == BootDevice.NONE or current.persistent == request.persistent
            ):
                return False
            await driver.set_boot_device(wanted, persistent=request.persistent)
            return True
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()

    @activity.defn(name="ensure_bios")
    async def ensure_bios(self, request: BiosRequest) -> dict[str, str]:
        """Apply only the attributes whose current value differs; return what was changed."""
        driver = await self._driver(request.node_id)
        try:
            current = await driver.get_bios_attributes()
            try:
                wanted = images.bios_attributes_for(
                    images.get_profile(request.tuning_profile), request.vendor, present=current
                )
            except images.ImagesError as exc:
                raise bad_input(str(exc), type(exc).__name__) from exc
            changes = {
                name: value
                for name, value in wanted.items()
                if str(current.get(name)) != str(value)
            }
            if changes:
                await driver.apply_bios_attributes(changes)
            return changes
        except BmcError as exc:
            raise bmc_failure(exc) from exc
        finally:
            await driver.close()
