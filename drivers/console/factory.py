"""Open a node's console by its kind."""

from __future__ import annotations

from .base import Console, ConsoleAccess, ConsoleError
from .socket import SocketConsole


async def open_console(access: ConsoleAccess) -> Console:
    if access.kind == "socket":
        return await SocketConsole.open(access.address)
    raise ConsoleError(f"no console driver for {access.kind!r}")
