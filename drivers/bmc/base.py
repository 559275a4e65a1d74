"""The BMC interface every protocol implementation provides.

Concerns follow Ironic's split (power, boot device, BIOS); one class per protocol implements
all of them, and `drivers.bmc.factory.driver_for` composes them for a node's hardware type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class PowerState(StrEnum):
    ON = "on"
    OFF = "off"


class BootDevice(StrEnum):
    NETWORK = "network"
    DISK = "disk"
    NONE = "none"  # no override: the firmware's own boot order


@dataclass(frozen=True)
class BootSetting:
    device: BootDevice
    persistent: bool


class BmcError(Exception):
    """A BMC call failed. `retryable` tells whether trying again may succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class BmcUnreachable(BmcError):
    """Timeout or transport failure: usually transient."""

    retryable = True


class BmcRejected(BmcError):
    """The BMC answered with an error it may not repeat (busy, internal error)."""

    retryable = True


class BmcAuthError(BmcError):
    """Wrong credentials: retrying cannot help until an operator fixes them."""

    retryable = False


class BmcUnsupported(BmcError):
    """The BMC or protocol does not offer this function."""

    retryable = False


class PowerInterface(Protocol):
    async def get_power_state(self) -> PowerState: ...
    async def power_on(self) -> None: ...
    async def power_off(self, *, soft: bool = False) -> None: ...
    async def reset(self) -> None: ...


class BootInterface(Protocol):
    async def get_boot_device(self) -> BootSetting: ...
    async def set_boot_device(self, device: BootDevice, *, persistent: bool = False) -> None: ...


class BiosInterface(Protocol):
    async def get_bios_attributes(self) -> dict[str, str]: ...
    async def apply_bios_attributes(self, changes: dict[str, str]) -> None: ...


class ManagementInterface(Protocol):
    async def get_bmc_firmware_version(self) -> str:
        """The BMC's own firmware version, as the BMC reports it."""
        ...


class BmcDriver(PowerInterface, BootInterface, BiosInterface, ManagementInterface, Protocol):
    async def close(self) -> None: ...
