"""The network worker gets the right dialect and SSH style for each NOS of the inventory."""

from __future__ import annotations

import pytest

from drivers.address import split_host_port
from drivers.switch.base import Nos
from drivers.switch.eos import EosDialect
from drivers.switch.factory import connect
from drivers.switch.linux_frr import LinuxFrrDialect
from drivers.switch.nxos import NxosDialect
from drivers.switch.ssh import CommandStyle, SshTransport

RECORD = {"username": "admin", "password": "s3cret", "asn": 65001, "timeout": 7.0}


@pytest.mark.parametrize(
    ("nos", "dialect", "style", "device_type"),
    [
        (Nos.LINUX_FRR, LinuxFrrDialect, CommandStyle.SHELL, "linux"),
        (Nos.ARISTA_EOS, EosDialect, CommandStyle.CLI, "arista_eos"),
        (Nos.CISCO_NXOS, NxosDialect, CommandStyle.CLI, "cisco_nxos"),
    ],
)
def test_each_nos_gets_its_dialect_and_session_style(
    nos: Nos, dialect: type, style: CommandStyle, device_type: str
) -> None:
    switch = connect(nos, name="leaf1", address="10.0.0.5:2222", vtep_address="10.1.0.1", **RECORD)
    assert isinstance(switch.dialect, dialect)
    transport = switch.transport
    assert isinstance(transport, SshTransport)
    assert transport.style is style
    assert transport.target.device_type == device_type
    assert (transport.target.host, transport.target.port) == ("10.0.0.5", 2222)
    assert transport.target.command_timeout == 7.0
    assert "s3cret" not in repr(transport.target)
    if style is CommandStyle.CLI:
        assert transport.error_pattern == switch.dialect.error_pattern


def test_linux_frr_switches_get_the_anycast_gateway_mac() -> None:
    switch = connect(
        Nos.LINUX_FRR, name="leaf1", address="leaf1", vtep_address="10.1.0.1",
        gateway_mac="02:6d:70:00:00:01", **RECORD,
    )  # fmt: skip
    assert isinstance(switch.dialect, LinuxFrrDialect)
    assert switch.dialect.gateway_mac == "02:6d:70:00:00:01"


def test_a_switch_without_a_vtep_is_refused() -> None:
    with pytest.raises(ValueError, match="no VTEP address"):
        connect(Nos.LINUX_FRR, name="leaf1", address="leaf1", vtep_address=None, **RECORD)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("leaf1", ("leaf1", 22)),
        ("10.0.0.5:2222", ("10.0.0.5", 2222)),
        ("[fd00::5]:2222", ("fd00::5", 2222)),
        ("[fd00::5]", ("fd00::5", 22)),
        ("fd00::5", ("fd00::5", 22)),
    ],
)
def test_management_addresses(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 22) == expected
