"""IpmiDriver against the lab's IPMI simulators over real RMCP+/UDP (lab in a child process)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.bmc.base import (
    BmcAuthError,
    BmcRejected,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    BootSetting,
    PowerState,
)
from drivers.bmc.factory import driver_for
from drivers.bmc.ipmi import IpmiDriver
from drivers.bmc.redfish import close_pooled_sessions
from tests.lab_fixtures import LabHandle, lab_process

IPMI_BASE_PORT = 19101
REDFISH_PORT = 18111
CONTROL_PORT = 18110


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("ipmi-lab") / "state"
    async with lab_process(
        state_dir=state_dir,
        nodes=6,
        ipmi_base_port=IPMI_BASE_PORT,
        redfish_port=REDFISH_PORT,
        control_port=CONTROL_PORT,
        protocols="ipmi",
        boot_delay=0.2,
    ) as handle:
        yield handle
    await close_pooled_sessions()  # BIOS calls go over the nodes' Redfish addresses


def ipmi(lab: LabHandle, node_id: str, **kwargs: float) -> IpmiDriver:
    return IpmiDriver(lab.endpoint(node_id), **{"timeout": 10.0, **kwargs})


async def test_power_cycle_and_idempotent_power_on(lab: LabHandle) -> None:
    driver = driver_for(lab.endpoint("lab-001"), timeout=10.0)
    assert await driver.get_power_state() is PowerState.OFF
    await driver.power_on()
    await driver.power_on()  # already on: no second chassis command
    assert await driver.get_power_state() is PowerState.ON
    await driver.reset()
    await driver.power_off()
    assert await driver.get_power_state() is PowerState.OFF
    counters = (await lab.state("lab-001"))["counters"]
    assert (counters["power_on"], counters["reset"], counters["power_off"]) == (1, 1, 1)


async def test_call_latency_is_low(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-001")
    await driver.get_power_state()  # login
    samples = []
    for _ in range(40):
        started = time.perf_counter()
        await driver.get_power_state()
        samples.append(time.perf_counter() - started)
    samples.sort()
    assert samples[20] < 0.05 and samples[-1] < 0.5, samples


async def test_boot_once_is_consumed_and_persistent_stays(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-002")
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    await driver.set_boot_device(BootDevice.NETWORK)
    assert await driver.get_boot_device() == BootSetting(BootDevice.NETWORK, persistent=False)
    await driver.power_on()  # the firmware uses the one-time override up
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    # The network boot ran against a boot URL nobody serves: recorded, no phone-home.
    state = await lab.wait_for("lab-002", lambda s: s["last_boot_error"])
    assert state["boots"] == 0 and "iPXE script" in state["last_boot_error"]
    await driver.set_boot_device(BootDevice.DISK, persistent=True)
    await driver.reset()
    assert await driver.get_boot_device() == BootSetting(BootDevice.DISK, persistent=True)
    await driver.set_boot_device(BootDevice.NONE)
    assert await driver.get_boot_device() == BootSetting(BootDevice.NONE, persistent=False)
    await driver.power_off()
    assert (await lab.state("lab-002"))["counters"]["set_boot"] == 3


async def test_bios_goes_over_redfish_address(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-003")
    bios = await driver.get_bios_attributes()
    assert bios["PowerTechnology#2800"] == "Energy Efficient"  # lab-003 is a Supermicro
    await driver.apply_bios_attributes(
        {"PowerTechnology#2800": "Custom", "CPUC6Report#0840": "Disable"}
    )
    bios = await driver.get_bios_attributes()
    assert (bios["PowerTechnology#2800"], bios["CPUC6Report#0840"]) == ("Custom", "Disable")
    assert (await lab.reset_bios("lab-003"))["bios"]["PowerTechnology#2800"] == "Energy Efficient"

    without = IpmiDriver(lab.endpoint("lab-003", redfish_address=None))
    with pytest.raises(BmcUnsupported):
        await without.get_bios_attributes()


async def test_wrong_credentials_are_auth_errors(lab: LabHandle) -> None:
    with pytest.raises(BmcAuthError) as wrong_password:
        await IpmiDriver(lab.endpoint("lab-004", password="wrong")).get_power_state()
    assert not wrong_password.value.retryable
    with pytest.raises(BmcAuthError):
        await IpmiDriver(lab.endpoint("lab-004", username="nobody")).get_power_state()


async def test_busy_bmc_is_rejected_then_recovers(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-004")
    await driver.get_power_state()
    await lab.set_faults("lab-004", fail_next=2)
    with pytest.raises(BmcRejected) as busy:
        await driver.power_on()  # the state query answers busy
    assert busy.value.retryable
    with pytest.raises(BmcRejected):
        await driver.power_on()
    await driver.power_on()  # a retry (what the activity does) succeeds
    state = await lab.state("lab-004")
    assert state["power"] == "on" and state["counters"]["power_on"] == 1


async def test_power_on_completes_through_30_percent_packet_loss(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-005", timeout=30.0)
    await driver.get_power_state()  # logged in; pyghmi's login itself is fragile under loss
    await lab.set_faults("lab-005", drop_rate=0.3)
    await driver.power_on()
    assert await driver.get_power_state() is PowerState.ON
    state = await lab.set_faults("lab-005")
    assert state["counters"]["power_on"] == 1  # retransmissions did not repeat it


async def test_delayed_answers_do_not_repeat_side_effects(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-006")
    await driver.get_power_state()
    await lab.set_faults("lab-006", delay_seconds=1.2)  # longer than pyghmi's first retry
    await driver.power_on()
    state = await lab.set_faults("lab-006")
    assert state["power"] == "on" and state["counters"]["power_on"] == 1


async def test_soft_off_escalates_to_hard_off(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-006", soft_off_wait=1.0, poll_interval=0.2)
    await driver.power_on()
    await lab.wait_for("lab-006", lambda s: s["os_up"])
    before = (await lab.state("lab-006"))["counters"]
    await lab.set_faults("lab-006", ignore_soft_off=True)
    await driver.power_off(soft=True)
    state = await lab.set_faults("lab-006")
    assert state["power"] == "off"
    after = state["counters"]
    assert (after["soft_off"] - before["soft_off"], after["power_off"] - before["power_off"]) == (
        1,
        1,
    )


async def test_soft_off_honoured_by_a_running_os(lab: LabHandle) -> None:
    driver = ipmi(lab, "lab-001", soft_off_wait=3.0, poll_interval=0.2)
    await driver.power_on()
    await lab.wait_for("lab-001", lambda s: s["os_up"])  # disk boot done: ACPI handled
    before = (await lab.state("lab-001"))["counters"]["power_off"]
    await driver.power_off(soft=True)
    state = await lab.state("lab-001")
    assert state["power"] == "off" and state["counters"]["power_off"] == before


async def test_unreachable_bmc_times_out() -> None:
    from drivers.bmc.endpoint import BmcEndpoint

    dead = IpmiDriver(BmcEndpoint("ipmi", "127.0.0.1:19199", "admin", "x"), timeout=1.5)
    with pytest.raises(BmcUnreachable):
        await dead.get_power_state()
