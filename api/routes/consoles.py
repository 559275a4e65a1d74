"""A node's serial console: live over WebSocket for its tenant and operators, and the output
kept per boot session for operators. The API authorizes and relays the bytes; the console
relay (consoles/) holds the console itself."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from core.secrets import console_ticket
from core.tasks import until_first
from identity.oidc import Principal
from identity.policy import Action, Resource
from inventory import console_logs
from inventory.models import ConsoleLog

from ..auth import authenticate, decide_and_record, principal, refusal, require, websocket_token
from ..deps import Db
from ..openapi import errors
from ..problems import Problem, deny
from ..schemas import NodeId
from .nodes import _authorized, node_resource

router = APIRouter(prefix="/v1/nodes", tags=["consoles"])
Caller = Annotated[Principal, Depends(principal)]

CLOSE_TOKEN_EXPIRED = 4401
CLOSE_RELAY_GONE = 1011


class ConsoleLogOut(BaseModel):
    id: uuid.UUID
    node_id: str
    boot_session_id: uuid.UUID | None
    image: str | None
    task: str | None  # None: the image's own boot; else the agent's task (clean, inspect, ...)
    started_at: datetime
    updated_at: datetime
    bytes_seen: int  # everything the console printed; only the newest bytes are kept

    @classmethod
    def of(cls, log: ConsoleLog) -> ConsoleLogOut:
        return cls(
            id=log.id, node_id=log.node_id, boot_session_id=log.boot_session_id,
            image=log.image, task=log.task, started_at=log.started_at,
            updated_at=log.updated_at, bytes_seen=log.bytes_seen,
        )  # fmt: skip


async def _relay(app: FastAPI, node_id: str) -> ClientConnection:
    settings = app.state.settings
    url = settings.console_relay_url.replace("http", "ws", 1).rstrip("/") + f"/nodes/{node_id}"
    ticket = console_ticket(app.state.console_secret, node_id)
    try:
        return await connect(
            url, additional_headers={"Authorization": f"Bearer {ticket}"}, open_timeout=10,
            max_size=2**20,
        )  # fmt: skip
    except InvalidStatus as exc:
        if exc.response.status_code == 404:
            raise Problem(
                409, "no-console", "Node has no console",
                f"node {node_id!r} has no console the relay can open: no IPMI BMC for"
                " Serial-over-LAN (Redfish defines none) and no console address enrolled",
            ) from exc  # fmt: skip
        raise _relay_unavailable(str(exc)) from exc
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise _relay_unavailable(str(exc)) from exc


def _relay_unavailable(detail: str) -> Problem:
    return Problem(
        503, "console-relay-unavailable", "Console relay unavailable", detail,
        headers={"Retry-After": "5"},
    )  # fmt: skip


@router.websocket("/{node_id}/console")
async def node_console(websocket: WebSocket, node_id: str) -> None:
    """The node's serial console: output as binary messages (recent output first), and what
    the client sends is typed into it. For the node's tenant (admins; members for their
    clusters' nodes) and operators; 404 for anyone else. The bearer token comes in the
    `Authorization` header or, from browsers, as the subprotocol `bearer.<token>`."""
    app: FastAPI = websocket.app
    token, subprotocol = websocket_token(websocket)
    try:
        who = await authenticate(app, token)
        async with app.state.sessions() as session:
            _, resource = await node_resource(session, node_id)
        decision = await decide_and_record(app, who, Action.CONSOLE, resource, uuid.uuid4().hex)
        if problem := refusal(decision, resource):
            raise problem
        relay = await _relay(app, node_id)
    except Problem as problem:
        await deny(websocket, problem)
        return
    await websocket.accept(subprotocol=subprotocol)
    deadline = None if who.expires_at is None else who.expires_at - time.time()

    async def to_client() -> None:
        async for message in relay:
            data = message if isinstance(message, bytes) else message.encode()
            await websocket.send_bytes(data)
        await websocket.close(CLOSE_RELAY_GONE, "console relay closed the stream; reconnect")

    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await relay.send(message.get("bytes") or (message.get("text") or "").encode())

    async def expiry() -> None:
        if deadline is None:
            await asyncio.Event().wait()
        await asyncio.sleep(max(deadline or 0, 0))
        await websocket.close(CLOSE_TOKEN_EXPIRED, "token expired")

    try:
        await until_first(
            to_client(), from_client(), expiry(), expected=(WebSocketDisconnect, ConnectionClosed)
        )
    finally:
        await relay.close()


async def _logs_allowed(request: Request, db: Db, who: Principal, node_id: str) -> None:
    await _authorized(request, db, who, node_id, Action.READ)
    await require(request, who, Action.READ, Resource("console-log", node_id))


@router.get(
    "/{node_id}/console-logs", response_model=list[ConsoleLogOut],
    summary="The node's console output, one log per boot session (operators)",
    responses=errors(403, 404),
)  # fmt: skip
async def list_console_logs(
    node_id: NodeId, request: Request, db: Db, who: Caller
) -> list[ConsoleLogOut]:
    await _logs_allowed(request, db, who, node_id)
    return [ConsoleLogOut.of(log) for log in await console_logs.listing(db, node_id)]


@router.get(
    "/{node_id}/console-logs/{log_id}", response_class=PlainTextResponse,
    summary="One boot session's console output, as text (operators)",
    responses=errors(403, 404),
)  # fmt: skip
async def get_console_log(
    node_id: NodeId, log_id: uuid.UUID, request: Request, db: Db, who: Caller
) -> PlainTextResponse:
    await _logs_allowed(request, db, who, node_id)
    try:
        log = await console_logs.get(db, node_id, log_id)
    except console_logs.ConsoleLogNotFound as exc:
        raise Problem(404, "not-found", "Not found", str(exc)) from exc
    return PlainTextResponse(log.output.decode("utf-8", errors="replace"))
