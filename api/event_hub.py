"""Fan-out of the event log to live subscribers, one PostgreSQL LISTEN per API process.

The inventory's trigger NOTIFYs each event row at commit; the hub parses it once and hands it
to every subscriber's bounded queue. A subscriber that falls too far behind is cut off (it
resumes from the log with its last event id) rather than growing memory without bound. If the
LISTEN connection drops, the hub reconnects and replays what it missed from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from inventory import events
from inventory.models import Event

log = logging.getLogger("metalplane.events")


class EventOut(BaseModel):
    """A state change, as streamed to clients."""

    id: int
    at: datetime
    kind: str
    resource_id: str
    tenant_id: str | None
    owner: str | None = None
    from_state: str | None
    to_state: str
    workflow_id: str | None
    reason: str | None

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls.model_validate(event, from_attributes=True)


class Lagged(Exception):
    """The subscriber fell behind by more than its queue holds."""


class Subscription:
    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[EventOut | None] = asyncio.Queue(capacity)
        self.lagged = False

    def offer(self, event: EventOut) -> None:
        if self.lagged:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            self._queue.get_nowait()  # make room for the end marker
            self._queue.put_nowait(None)

    async def next(self) -> EventOut:
        event = await self._queue.get()
        if event is None:
            raise Lagged
        return event


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class EventHub:
    def __init__(
        self,
        database_url: str,
        schema: str,
        sessions: async_sessionmaker[AsyncSession],
        *,
        queue_capacity: int = 10_000,
    ) -> None:
        self._dsn = _plain_dsn(database_url)
        self._channel = events.channel(schema)
        self._sessions = sessions
        self._capacity = queue_capacity
        self._subscribers: set[Subscription] = set()
        self._last_id = 0
        self._connection: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        async with self._sessions() as session:
            self._last_id = await events.newest_id(session)
        await self._listen()
        self._watch = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=5)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = Subscription(self._capacity)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def _listen(self) -> None:
        self._lost.clear()
        connection = await asyncpg.connect(self._dsn)
        connection.add_termination_listener(lambda _c: self._lost.set())
        await connection.add_listener(self._channel, self._on_notify)
        self._connection = connection

    async def _keep_listening(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("event LISTEN connection lost; reconnecting")
            while True:
                try:
                    await self._listen()
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("event LISTEN reconnect failed: %s", exc)
                    await asyncio.sleep(1)
            await self._replay_missed()

    async def _replay_missed(self) -> None:
        async with self._sessions() as session:
            while missed := await events.after(session, self._last_id):
                for event in missed:
                    self._dispatch(EventOut.of(event))

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = EventOut.model_validate(json.loads(payload))
        except ValueError:
            log.exception("unreadable event notification: %.200s", payload)
            return
        self._dispatch(event)

    def _dispatch(self, event: EventOut) -> None:
        self._last_id = max(self._last_id, event.id)
        for subscription in list(self._subscribers):
            subscription.offer(event)
