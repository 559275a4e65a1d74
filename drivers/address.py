"""Management addresses as the inventory stores them: `host`, `host:port` or `[v6]:port`."""

from __future__ import annotations


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """(host, port), the port being `default_port` when the address names none."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port
