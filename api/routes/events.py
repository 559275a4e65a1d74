"""Live status: `/v1/events` streams the state changes of the resources the caller may see.

The same path serves a WebSocket (one JSON event per text message) and, for plain HTTP
clients, Server-Sent Events. Events come from the inventory's event log as the workflows
commit their progress (api.event_hub), never from polling. `after` (or SSE's `Last-Event-ID`)
first replays what the caller missed. Each event is shown only if the policy lets the caller
read its resource; the stream ends when the caller's token expires.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnect

from core.tasks import until_first
from identity.oidc import Principal
from identity.policy import Action, Resource, decide
from inventory import events

from ..auth import authenticate, authorize, decide_and_record, refusal, websocket_token
from ..event_hub import EventHub, EventOut, Lagged
from ..problems import Problem, deny

router = APIRouter(prefix="/v1/events", tags=["events"])

# WebSocket close codes (4000-4999 are the application's).
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_LAGGED = 4408

EventKind = Literal["node", "tenant", "network", "cluster"]
Kinds = Annotated[
    list[EventKind],
    Query(alias="kind", description="Only these resource kinds (repeatable)", max_length=16),
]
After = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**63 - 1,  # an event id is a PostgreSQL bigint
        description="Replay events after this id first (resume), then stream live",
    ),
]


class TokenExpired(Exception):
    pass


def _visible(who: Principal, event: EventOut) -> bool:
    """Exactly the rule GET of the resource applies: its tenant and owner at the event."""
    resource = Resource(event.kind, event.resource_id, tenant=event.tenant_id, owner=event.owner)
    return decide(who, Action.READ, resource).allowed


async def events_for(
    app: FastAPI, who: Principal, kinds: Sequence[str], after: int | None
) -> AsyncIterator[EventOut]:
    """The caller's events: the backlog after `after`, then live ones, until the token expires.
    Raises TokenExpired, or Lagged when the caller reads slower than events arrive."""
    hub: EventHub = app.state.event_hub
    loop = asyncio.get_running_loop()
    deadline = None if who.expires_at is None else loop.time() + who.expires_at - time.time()
    async with hub.subscribe() as live:  # before the backlog query: nothing falls in between
        replayed: set[int] = set()
        cursor = after
        while cursor is not None:
            async with app.state.sessions() as session:
                page = await events.after(session, cursor, kinds=kinds)
            for row in page:
                replayed.add(row.id)
                event = EventOut.of(row)
                if _visible(who, event):
                    yield event
            cursor = page[-1].id if page else None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await live.next()
            except TimeoutError as exc:
                raise TokenExpired from exc
            if event.id in replayed or (kinds and event.kind not in kinds):
                continue
            if _visible(who, event):
                yield event


@router.get(
    "",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `id` is the event id, `event` the resource "
            "kind, `data` an Event. A final `token-expired` or `lagged` event ends the stream; "
            "reconnect with `Last-Event-ID` to resume.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream_events(
    request: Request,
    who: Annotated[Principal, Depends(authorize("event", Action.READ))],
    kinds: Kinds = [],  # noqa: B006 - FastAPI copies defaults
    after: After = None,
    last_event_id: Annotated[
        str | None, Header(pattern=r"^[0-9]{1,18}$", description="SSE resume: same as `after`")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """State changes of the resources the caller may read, pushed as they commit.

    The same path upgrades to a WebSocket (`Authorization: Bearer` header, or the subprotocol
    `bearer.<token>` from browsers): one JSON Event per message, closed with code 4401 when the
    token expires and 4408 when the client reads too slowly (resume with `after`)."""
    start = int(last_event_id) if last_event_id is not None else after
    try:
        async for event in events_for(request.app, who, kinds, start):
            yield ServerSentEvent(id=str(event.id), event=event.kind, data=event)
    except TokenExpired:
        yield ServerSentEvent(event="token-expired", data={"detail": "renew the token"})
    except Lagged:
        yield ServerSentEvent(event="lagged", data={"detail": "reconnect with Last-Event-ID"})


@router.websocket("")
async def stream_events_websocket(
    websocket: WebSocket,
    kinds: Kinds = [],  # noqa: B006 - FastAPI copies defaults
    after: After = None,
) -> None:
    app: FastAPI = websocket.app
    token, subprotocol = websocket_token(websocket)
    request_id = uuid.uuid4().hex
    try:
        who = await authenticate(app, token)
        resource = Resource(kind="event")
        if problem := refusal(
            await decide_and_record(app, who, Action.READ, resource, request_id), resource
        ):
            raise problem
    except Problem as problem:
        await deny(websocket, problem)
        return
    await websocket.accept(subprotocol=subprotocol)

    async def send_all() -> None:
        try:
            async for event in events_for(app, who, kinds, after):
                await websocket.send_text(event.model_dump_json())
        except TokenExpired:
            await websocket.close(CLOSE_TOKEN_EXPIRED, "token expired")
        except Lagged:
            await websocket.close(CLOSE_LAGGED, "client too slow; reconnect with after=<last id>")

    async def until_disconnect() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # clients have nothing to say; ignore what they send

    await until_first(send_all(), until_disconnect(), expected=(WebSocketDisconnect,))
