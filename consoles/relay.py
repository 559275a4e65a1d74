"""The relay's work: hold the consoles the inventory lists, and write their output to each
node's log of its current boot session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.settings import Settings
from drivers.console.base import Console
from inventory import console_logs
from inventory.console_logs import ConsoleTarget

from .hub import NodeConsole

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5

ConsoleOpener = Callable[[ConsoleTarget], Awaitable[Console]]


class Relay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        open_console: ConsoleOpener,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._open_console = open_console
        self._held: dict[str, tuple[ConsoleTarget, NodeConsole]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.scan()
        self._tasks = [
            asyncio.create_task(self._every(self._settings.console_scan_seconds, self.scan)),
            asyncio.create_task(self._every(FLUSH_SECONDS, self.flush)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
        for _, console in self._held.values():
            await console.stop()
        self._held.clear()

    async def console(self, node_id: str) -> NodeConsole | None:
        """The node's held console; an unknown node is looked for at once (just enrolled)."""
        if node_id not in self._held:
            await self.scan()
        held = self._held.get(node_id)
        return held[1] if held else None

    async def scan(self) -> None:
        """Hold what the inventory lists now: new consoles opened, changed ones reopened,
        removed ones closed."""
        async with self._scan_lock:
            async with self._sessions() as session:
                wanted = {t.node_id: t for t in await console_logs.targets(session)}
            for node_id, (target, console) in list(self._held.items()):
                if wanted.get(node_id) != target:
                    await self._flush_one(console)
                    await console.stop()
                    del self._held[node_id]
            for node_id, target in wanted.items():
                if node_id not in self._held:
                    console = NodeConsole(node_id, lambda t=target: self._open_console(t))
                    console.start()
                    self._held[node_id] = (target, console)

    async def flush(self) -> None:
        for _, console in list(self._held.values()):
            await self._flush_one(console)

    async def _flush_one(self, console: NodeConsole) -> None:
        reads = console.take_unlogged()
        if not reads:
            return
        try:
            async with self._sessions.begin() as session:
                await console_logs.append(
                    session, console.node_id, reads,
                    max_bytes=self._settings.console_log_max_bytes,
                    kept=self._settings.console_logs_kept,
                )  # fmt: skip
        except Exception:  # the database away: this output is lost, the relay goes on
            lost = sum(len(data) for _, data in reads)
            log.exception("%s: console output not logged (%d bytes)", console.node_id, lost)

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:
                log.exception("console relay: %s failed", getattr(work, "__name__", work))
