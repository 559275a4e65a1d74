"""A Switch for an inventory record: the dialect of its NOS over an SSH session."""

from __future__ import annotations

import dataclasses

from drivers.address import split_host_port
from drivers.switch.base import Nos, Switch
from drivers.switch.eos import EosDialect
from drivers.switch.linux_frr import linux_frr_switch
from drivers.switch.nxos import NxosDialect
from drivers.switch.ssh import CommandStyle, SshTarget, SshTransport

SSH_PORT = 22
# netmiko's device types of the CLI switches.
_DEVICE_TYPES = {Nos.ARISTA_EOS: "arista_eos", Nos.CISCO_NXOS: "cisco_nxos"}


def connect(
    nos: Nos,
    *,
    name: str,
    address: str,
    username: str,
    password: str,
    asn: int,
    vtep_address: str | None,
    timeout: float,
    gateway_mac: str | None = None,
) -> Switch:
    """The switch's driver; the SSH session opens on its first command. `gateway_mac`: the
    anycast gateway MAC of a Linux + FRR switch's SVIs (None: each bridge's own)."""
    if vtep_address is None:
        raise ValueError(f"switch {name} has no VTEP address")
    host, port = split_host_port(address, SSH_PORT)
    target = SshTarget(
        host=host,
        port=port,
        username=username,
        password=password,
        connect_timeout=timeout,
        command_timeout=timeout,
    )
    match nos:
        case Nos.LINUX_FRR:
            return linux_frr_switch(
                name, target, vtep=vtep_address, asn=asn, gateway_mac=gateway_mac
            )
        case Nos.ARISTA_EOS:
            dialect: EosDialect | NxosDialect = EosDialect(asn=asn, router_id=vtep_address)
        case Nos.CISCO_NXOS:
            dialect = NxosDialect(asn=asn, router_id=vtep_address)
    cli_target = dataclasses.replace(target, device_type=_DEVICE_TYPES[nos])
    transport = SshTransport(
        cli_target, style=CommandStyle.CLI, error_pattern=dialect.error_pattern
    )
    return Switch(name, dialect, transport)
