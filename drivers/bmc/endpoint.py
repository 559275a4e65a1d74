"""Where and how to reach one node's BMC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from drivers.address import split_host_port as address_split

IPMI_DEFAULT_PORT = 623


@dataclass(frozen=True)
class BmcEndpoint:
    protocol: Literal["ipmi", "redfish"]
    # ipmi: "host[:port]"; redfish: the System URL (".../redfish/v1/Systems/<id>")
    address: str
    username: str
    # repr=False: endpoints end up in logs and exception messages
    password: str = field(repr=False)
    # ipmi nodes: BIOS settings go over this Redfish System URL (IPMI standardizes none)
    redfish_address: str | None = None
    verify_tls: bool = False

    @property
    def host(self) -> str:
        """The BMC host, the unit the per-BMC concurrency limit applies to."""
        if self.protocol == "redfish":
            return urlsplit(self.address).hostname or self.address
        return split_host_port(self.address)[0]

    @property
    def limit_key(self) -> str:
        """One key per BMC: IPMI host:port, Redfish the System URL (a lab's emulator serves
        many Systems from one port, as a chassis manager does, each standing for one BMC)."""
        if self.protocol == "redfish":
            return self.address.rstrip("/")
        host, port = split_host_port(self.address)
        return f"{host}:{port}"


def split_host_port(address: str) -> tuple[str, int]:
    """(host, port) of an IPMI address; 623 when it names no port."""
    return address_split(address, IPMI_DEFAULT_PORT)
