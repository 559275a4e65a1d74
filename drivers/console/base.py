"""A node's serial console: one byte stream in each direction.

Servers expose it through their BMC (IPMI Serial-over-LAN) or through a console server's raw
TCP port; a lab QEMU VM through its serial socket. A console has one reader at a time (a BMC
allows one SOL session), so the platform's console relay holds it and fans it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

ConsoleKind = Literal["ipmi-sol", "socket"]


class ConsoleError(Exception):
    """The console cannot be opened or broke; the relay reconnects."""


@dataclass(frozen=True)
class ConsoleAccess:
    """`address`: for `socket`, tcp://HOST:PORT or unix:///PATH; for `ipmi-sol`, the BMC's
    HOST[:PORT] with its credentials."""

    kind: ConsoleKind
    address: str
    username: str = ""
    password: str = ""


class Console(Protocol):
    async def read(self) -> bytes:
        """The next output; b"" when the console closed."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...
