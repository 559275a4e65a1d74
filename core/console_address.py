"""A serial console's address as a byte stream: shared by the enrollment's validation and
the console driver."""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_address(address: str) -> tuple[str, str, int]:
    """("tcp", host, port) or ("unix", path, 0); ValueError if it is neither."""
    parts = urlsplit(address)
    if parts.scheme == "tcp" and parts.hostname and parts.port and parts.path in ("", "/"):
        return "tcp", parts.hostname, parts.port
    if parts.scheme == "unix" and parts.path.startswith("/") and not parts.netloc:
        return "unix", parts.path, 0
    raise ValueError(f"not a console address (tcp://HOST:PORT or unix:///PATH): {address!r}")
