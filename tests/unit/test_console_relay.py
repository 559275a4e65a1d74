"""The console relay on a real PostgreSQL, holding a console that is a unix socket server (as
a QEMU VM's serial port or a console server's port is): viewers get the scrollback then live
output, what they type reaches the console, output is kept per boot session with only the
newest bytes past the limit, and a console that goes away is reconnected."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from consoles.relay import Relay
from core.settings import Settings
from drivers.console.base import Console, ConsoleAccess
from drivers.console.factory import open_console
from inventory import boot_sessions, console_logs, nodes
from inventory.console_logs import ConsoleTarget
from inventory.models import ConsoleLog
from tests.db import migrated_sessions


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(postgres_url, "t_console_relay") as factory:
        yield factory


class SerialPort:
    """A serial port as a socket server: what the node prints, and what it was sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = bytearray()
        self.clients: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, str(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        while data := await reader.read(1024):
            self.received += data

    async def connected(self) -> None:
        async with asyncio.timeout(10):
            while not [c for c in self.clients if not c.is_closing()]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def print(self, data: bytes) -> None:
        for writer in self.clients:
            if not writer.is_closing():
                writer.write(data)
                await writer.drain()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.clients:
            writer.close()
        await self.server.wait_closed()
        self.clients.clear()


async def _enroll(
    sessions: async_sessionmaker[AsyncSession], node_id: str, mac: str, console: str
) -> None:
    async with sessions.begin() as session:
        await nodes.enroll(session, nodes.NewNode(
            id=node_id, vendor="QEMU", model="Standard PC", macs=[mac], bmc_protocol="ipmi",
            bmc_address="127.0.0.1:623", bmc_username="admin", bmc_password="secret",
            console_address=console,
        ))  # fmt: skip


async def _boot_session(sessions: async_sessionmaker[AsyncSession], node_id: str) -> uuid.UUID:
    session_id = uuid.uuid4()
    async with sessions.begin() as session:
        await boot_sessions.open_session(
            session, session_id=session_id, node_id=node_id, workflow_id=f"wf-{session_id}",
            image="lab-qemu", kernel_args=[], kernel_sha256=None, initrd_sha256=None,
            ttl=timedelta(hours=1), task="clean",
        )  # fmt: skip
    return session_id


async def _open(target: ConsoleTarget) -> Console:
    return await open_console(ConsoleAccess("socket", target.address))


async def _read_until(queue: asyncio.Queue[bytes | None], wanted: bytes) -> bytes:
    seen = b""
    async with asyncio.timeout(10):
        while wanted not in seen:
            chunk = await queue.get()
            assert chunk is not None, seen
            seen += chunk
    return seen


async def test_viewers_input_and_logs_per_boot_session(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    port = SerialPort(tmp_path / "serial.sock")
    await port.start()
    await _enroll(sessions, "con-1", "02:00:00:00:0c:01", f"unix://{port.path}")
    settings = Settings(data_dir=tmp_path, console_scan_seconds=0.2, console_log_max_bytes=1024,
                        console_logs_kept=2)  # fmt: skip
    relay = Relay(sessions, settings, _open)
    await relay.start()
    try:
        first = await _boot_session(sessions, "con-1")
        await port.connected()
        await port.print(b"SeaBIOS\r\niPXE booting\r\n")
        console = await relay.console("con-1")
        assert console is not None
        async with console.view() as viewer:
            assert b"iPXE booting" in await _read_until(viewer, b"iPXE booting")  # scrollback
            await port.print(b"login: ")
            await _read_until(viewer, b"login: ")
            await console.write(b"root\n")
            async with asyncio.timeout(10):
                while b"root\n" not in port.received:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

        # Output read before the next session opened belongs to the first, flushed or not.
        second = await _boot_session(sessions, "con-1")
        await port.print(b"x" * 3000 + b"END\r\n")
        await asyncio.sleep(0.1)
        await relay.flush()
        async with sessions() as session:
            logs = {
                log.boot_session_id: log for log in await console_logs.listing(session, "con-1")
            }
            assert set(logs) == {first, second}
            first_log = await console_logs.get(session, "con-1", logs[first].id)
            assert first_log.output == b"SeaBIOS\r\niPXE booting\r\nlogin: "
            assert first_log.task == "clean" and first_log.image == "lab-qemu"
            second_log = await console_logs.get(session, "con-1", logs[second].id)
            assert len(second_log.output) == 1024 and second_log.output.endswith(b"END\r\n")
            assert second_log.bytes_seen == 3005

        third = await _boot_session(sessions, "con-1")  # only the newest two are kept
        await port.print(b"third\r\n")
        await asyncio.sleep(0.1)
        await relay.flush()
        async with sessions() as session:
            kept = await session.scalars(
                select(ConsoleLog.boot_session_id).where(ConsoleLog.node_id == "con-1")
            )
            assert set(kept) == {second, third}
    finally:
        await relay.stop()
        await port.stop()


async def test_a_console_that_goes_away_is_reconnected(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    port = SerialPort(tmp_path / "serial.sock")
    await _enroll(sessions, "con-2", "02:00:00:00:0c:02", f"unix://{port.path}")
    relay = Relay(sessions, Settings(data_dir=tmp_path, console_scan_seconds=0.2), _open)
    await relay.start()
    try:
        await asyncio.sleep(0.5)  # nothing listens yet (a VM powered off)
        await port.start()
        await port.connected()
        console = await relay.console("con-2")
        assert console is not None
        async with console.view() as viewer:
            await port.print(b"first power-on\r\n")
            await _read_until(viewer, b"first power-on")
            await port.stop()  # powered off
            path = port.path
            path.unlink(missing_ok=True)
            port = SerialPort(path)
            await port.start()  # and on again
            await port.connected()
            await port.print(b"second power-on\r\n")
            await _read_until(viewer, b"second power-on")
    finally:
        await relay.stop()
        await port.stop()


@pytest.mark.parametrize("address", ["tcp://console-server:7001", "unix:///run/vm/serial.sock"])
def test_console_addresses(address: str) -> None:
    from core.console_address import parse_address

    assert parse_address(address)[0] == address.split(":")[0]


@pytest.mark.parametrize(
    "address", ["tcp://console-server", "http://x:1", "unix://relative/path", "/dev/ttyS0"]
)
def test_not_console_addresses(address: str) -> None:
    from core.console_address import parse_address

    with pytest.raises(ValueError, match="not a console address"):
        parse_address(address)
