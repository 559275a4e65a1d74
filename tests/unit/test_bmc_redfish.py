"""RedfishDriver against the lab's Redfish BMC (sushy-tools emulator with the lab's driver)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from drivers.bmc.base import (
    BmcAuthError,
    BmcRejected,
    BmcUnreachable,
    BootDevice,
    BootSetting,
    PowerState,
)
from drivers.bmc.factory import driver_for
from drivers.bmc.redfish import RedfishDriver, close_pooled_sessions
from tests.lab_fixtures import LabHandle, lab_process

REDFISH_PORT = 18121
CONTROL_PORT = 18120
IPMI_BASE_PORT = 19121  # unused: every node is a Redfish node


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LabHandle]:
    async with lab_process(
        state_dir=tmp_path_factory.mktemp("redfish-lab") / "state",
        nodes=5,
        ipmi_base_port=IPMI_BASE_PORT,
        redfish_port=REDFISH_PORT,
        control_port=CONTROL_PORT,
        protocols="redfish",
        boot_delay=0.2,
    ) as handle:
        yield handle
    await close_pooled_sessions()


def redfish(lab: LabHandle, node_id: str, **kwargs: float) -> RedfishDriver:
    return RedfishDriver(lab.endpoint(node_id), **{"timeout": 10.0, **kwargs})


async def test_power_cycle_applies_immediately(lab: LabHandle) -> None:
    driver = driver_for(lab.endpoint("lab-001"), timeout=10.0)
    assert await driver.get_power_state() is PowerState.OFF
    await driver.power_on()
    await driver.power_on()
    assert await driver.get_power_state() is PowerState.ON
    await driver.reset()
    await driver.power_off()
    assert await driver.get_power_state() is PowerState.OFF
    counters = (await lab.state("lab-001"))["counters"]
    assert (counters["power_on"], counters["reset"], counters["power_off"]) == (1, 1, 1)


async def test_boot_override_once_and_continuous(lab: LabHandle) -> None:
    driver = redfish(lab, "lab-002")
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    await driver.set_boot_device(BootDevice.NETWORK)
    assert await driver.get_boot_device() == BootSetting(BootDevice.NETWORK, persistent=False)
    await driver.power_on()  # Once: consumed by this boot
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    state = await lab.wait_for("lab-002", lambda s: s["last_boot_error"])
    assert state["boots"] == 0  # nobody serves the boot URL: no phone-home
    await driver.set_boot_device(BootDevice.DISK, persistent=True)
    await driver.reset()
    assert await driver.get_boot_device() == BootSetting(BootDevice.DISK, persistent=True)
    await driver.set_boot_device(BootDevice.NONE)
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    assert (await lab.state("lab-002"))["counters"]["set_boot"] == 3


async def test_bios_read_apply_and_factory_reset(lab: LabHandle) -> None:
    driver = redfish(lab, "lab-003")  # Supermicro
    assert (await driver.get_bios_attributes())["PowerTechnology#2800"] == "Energy Efficient"
    await driver.apply_bios_attributes(
        {"PowerTechnology#2800": "Disable", "CPUC6Report#0840": "Disable"}
    )
    bios = await driver.get_bios_attributes()
    assert (bios["PowerTechnology#2800"], bios["CPUC6Report#0840"]) == ("Disable", "Disable")
    with pytest.raises(BmcRejected) as unknown:
        await driver.apply_bios_attributes({"NoSuchKnob": "On"})
    assert not unknown.value.retryable
    await lab.reset_bios("lab-003")
    assert (await driver.get_bios_attributes())["PowerTechnology#2800"] == "Energy Efficient"
    assert (await lab.state("lab-003"))["counters"]["bios_patch"] == 1


async def test_wrong_password_is_an_auth_error(lab: LabHandle) -> None:
    with pytest.raises(BmcAuthError) as denied:
        await RedfishDriver(lab.endpoint("lab-004", password="wrong")).get_power_state()
    assert not denied.value.retryable


async def test_busy_bmc_answers_503_then_recovers(lab: LabHandle) -> None:
    driver = redfish(lab, "lab-004")
    await driver.get_power_state()
    await lab.set_faults("lab-004", fail_next=1)
    with pytest.raises(BmcRejected) as busy:
        await driver.power_on()
    assert busy.value.retryable
    await driver.power_on()
    state = await lab.state("lab-004")
    assert state["power"] == "on" and state["counters"]["power_on"] == 1


async def test_dropped_request_is_unreachable(lab: LabHandle) -> None:
    await lab.set_faults("lab-005", drop_rate=1.0)
    with pytest.raises(BmcUnreachable) as dropped:
        await redfish(lab, "lab-005", timeout=1.5).get_power_state()
    assert dropped.value.retryable
    await lab.set_faults("lab-005")


async def test_delay_is_bounded_by_the_timeout(lab: LabHandle) -> None:
    await lab.set_faults("lab-005", delay_seconds=3.0)
    with pytest.raises(BmcUnreachable):
        await redfish(lab, "lab-005", timeout=1.0).get_power_state()
    await lab.set_faults("lab-005", delay_seconds=0.3)
    assert await redfish(lab, "lab-005", timeout=5.0).get_power_state() is PowerState.OFF
    await lab.set_faults("lab-005")


async def test_soft_off_escalates_to_force_off(lab: LabHandle) -> None:
    driver = redfish(lab, "lab-001", soft_off_wait=1.0, poll_interval=0.2)
    await driver.power_on()
    await lab.set_faults("lab-001", ignore_soft_off=True)
    await driver.power_off(soft=True)
    state = await lab.set_faults("lab-001")
    assert state["power"] == "off"
    assert (state["counters"]["soft_off"], state["counters"]["power_off"]) == (1, 2)
