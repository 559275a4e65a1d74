"""A console reached as a plain byte stream: a console server's raw TCP port (one per serial
line, as Opengear's or Avocent's) or a QEMU VM's serial chardev socket."""

from __future__ import annotations

import asyncio

from core.console_address import parse_address

from .base import ConsoleError

CHUNK = 4096


class SocketConsole:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, address: str, timeout: float = 10.0) -> SocketConsole:
        kind, where, port = parse_address(address)
        try:
            async with asyncio.timeout(timeout):
                if kind == "tcp":
                    reader, writer = await asyncio.open_connection(where, port)
                else:
                    reader, writer = await asyncio.open_unix_connection(where)
        except (OSError, TimeoutError) as exc:
            raise ConsoleError(f"console {address}: {exc}") from exc
        return cls(reader, writer)

    async def read(self) -> bytes:
        try:
            return await self._reader.read(CHUNK)
        except OSError as exc:
            raise ConsoleError(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise ConsoleError(str(exc)) from exc

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass
