"""The relay's HTTP face, for the API only: `WS /nodes/{id}` streams the node's console
(the scrollback, then live output as binary messages; messages sent are typed into it).
A ticket made with the secret the API shares (core.secrets) is required per node."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.secrets import console_relay_secret, console_ticket
from core.settings import Settings
from core.tasks import until_first
from drivers.console.base import ConsoleAccess, ConsoleError
from drivers.console.factory import open_console
from inventory.console_logs import ConsoleTarget
from inventory.db import create_engine, session_factory

from .relay import Relay


async def _open(target: ConsoleTarget):  # type: ignore[no-untyped-def]
    return await open_console(
        ConsoleAccess(target.kind, target.address, target.username, target.password)  # type: ignore[arg-type]
    )


def create_app(settings: Settings) -> Starlette:
    secret = console_relay_secret(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.database_url is None:
            raise RuntimeError("the console relay needs METALPLANE_DATABASE_URL")
        engine = create_engine(settings.database_url, schema=settings.database_schema,
                               pool_size=2)  # fmt: skip
        relay = Relay(session_factory(engine), settings, _open)
        app.state.relay = relay
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()
            await engine.dispose()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def node_console(websocket: WebSocket) -> None:
        node_id = websocket.path_params["node_id"]
        scheme, _, ticket = websocket.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            ticket.strip(), console_ticket(secret, node_id)
        ):
            await websocket.send_denial_response(Response("bad ticket", status_code=403))
            return
        relay: Relay = websocket.app.state.relay
        console = await relay.console(node_id)
        if console is None:
            await websocket.send_denial_response(Response("no console", status_code=404))
            return
        await websocket.accept()
        async with console.view() as output:

            async def send() -> None:
                while (data := await output.get()) is not None:
                    await websocket.send_bytes(data)
                await websocket.close(1011, "console dropped this viewer; reconnect")

            async def receive() -> None:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    data = message.get("bytes") or (message.get("text") or "").encode()
                    try:
                        await console.write(data)
                    except ConsoleError:
                        pass  # not connected now: typing is lost, as on a real console

            await until_first(send(), receive(), expected=(WebSocketDisconnect,))

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            WebSocketRoute("/nodes/{node_id}", node_console),
        ],
        lifespan=lifespan,
    )
