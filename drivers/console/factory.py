"""Open a node's console by its kind."""

from __future__ import annotations

from .base import Console, ConsoleAccess, ConsoleError
from .ipmi_sol import SolConsole
from .socket import SocketConsole


async def open_console(access: ConsoleAccess) -> Console:
    if access.kind == "socket":
        return await SocketConsole.open(access.address)
    if access.kind == "ipmi-sol":
        return await SolConsole.open(access.address, access.username, access.password)
    raise ConsoleError(f"no console driver for {access.kind!r}")
