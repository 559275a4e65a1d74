"""One node's console, held open: output goes to a scrollback, the viewers and the log
buffer; viewers' input goes to the console. Reconnects while the console is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from drivers.console.base import Console, ConsoleError

log = logging.getLogger(__name__)

SCROLLBACK_BYTES = 64 * 1024  # what a viewer sees first: the recent screenfuls
VIEWER_QUEUE = 1024  # chunks; a viewer further behind is dropped (it reconnects)
# Retried at once, then every 0.2 s: a VM powered on is caught while its firmware prints (a
# console server's port or a BMC's SOL stays up, so only a fault makes this loop spin).
RETRY_SECONDS = (0.05, 0.2)

Opener = Callable[[], Awaitable[Console]]


class NodeConsole:
    def __init__(self, node_id: str, open_console: Opener) -> None:
        self.node_id = node_id
        self._open = open_console
        self._console: Console | None = None
        self._scrollback = bytearray()
        self._unlogged: list[tuple[datetime, bytes]] = []
        self._viewers: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._hold(), name=f"console {self.node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for viewer in self._viewers:
            viewer.put_nowait(None)

    def take_unlogged(self) -> list[tuple[datetime, bytes]]:
        """The output since the last call, for the log: each read with when it came."""
        taken, self._unlogged = self._unlogged, []
        return taken

    async def write(self, data: bytes) -> None:
        if self._console is None:
            raise ConsoleError(f"{self.node_id}: console not connected")
        await self._console.write(data)

    @contextlib.asynccontextmanager
    async def view(self) -> AsyncIterator[asyncio.Queue[bytes | None]]:
        """A queue of output: the scrollback first, then live; None when the viewer is
        dropped (too slow, or the relay stops holding the node)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(VIEWER_QUEUE)
        if self._scrollback:
            queue.put_nowait(bytes(self._scrollback))
        self._viewers.add(queue)
        try:
            yield queue
        finally:
            self._viewers.discard(queue)

    def _output(self, data: bytes) -> None:
        self._scrollback += data
        del self._scrollback[:-SCROLLBACK_BYTES]
        self._unlogged.append((datetime.now(UTC), data))
        for viewer in list(self._viewers):
            try:
                viewer.put_nowait(data)
            except asyncio.QueueFull:
                self._viewers.discard(viewer)
                viewer.get_nowait()  # room for the end marker
                viewer.put_nowait(None)

    async def _hold(self) -> None:
        failures = 0
        while True:
            try:
                self._console = await self._open()
                self.connected.set()
                failures = 0
                while data := await self._console.read():
                    self._output(data)
                log.info("%s: console closed; reconnecting", self.node_id)
            except ConsoleError as exc:
                log.info("%s: console unavailable: %s", self.node_id, exc)
            finally:
                self.connected.clear()
                console, self._console = self._console, None
                if console is not None:
                    await console.close()
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1
