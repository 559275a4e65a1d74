"""The API's boundary, before any route runs: every string from the path, the query and the
headers it relies on is checked (UTF-8, no control characters, bounded lengths), `/v1` callers
are authenticated and charged against their rate limit, and a request body is read only after
that, up to a size limit (413 beyond). A refusal is a problem+json 4xx; an authenticated
caller's refusal is also written to the audit log.

Routes then validate their own parameters (ids, enums) with FastAPI; what reaches them can be
stored and queried without a database error."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from identity.oidc import Principal
from inventory import audit

from .auth import authenticate, bearer_token
from .problems import Problem, problem_response

log = logging.getLogger("metalplane.boundary")

MAX_PATH_CHARS = 1000  # an idempotency key stores "POST <path>" in 1,024
MAX_SEGMENT_CHARS = 255
MAX_QUERY_BYTES = 4096
MAX_QUERY_PARAMETERS = 64
MAX_QUERY_VALUE_CHARS = 1024
MAX_AUTHORIZATION_BYTES = 16_384
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL = "principal"  # where the authenticated caller is kept in the request's state


class Refused(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = Problem(status, slug, title, detail)


def _bad(where: str, why: str) -> Refused:
    return Refused(400, "invalid-parameter", "Invalid request parameter", f"{where}: {why}")


def _text(raw: bytes, where: str, limit: int) -> str:
    """Percent-decoded bytes as text: UTF-8, no control characters, at most `limit` chars."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(where, "not UTF-8") from exc
    if _CONTROL.search(text):
        raise _bad(where, "control characters are not allowed")
    if len(text) > limit:
        raise _bad(where, f"longer than {limit} characters")
    return text


def check_path(scope: Scope) -> None:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    path = _text(unquote_to_bytes(raw.split(b"?", 1)[0]), "path", MAX_PATH_CHARS)
    for segment in path.split("/"):
        if len(segment) > MAX_SEGMENT_CHARS:
            raise _bad("path", f"a segment is longer than {MAX_SEGMENT_CHARS} characters")


def check_query(query: bytes) -> None:
    if len(query) > MAX_QUERY_BYTES:
        raise _bad("query", f"longer than {MAX_QUERY_BYTES} bytes")
    pairs = [p for p in query.split(b"&") if p]
    if len(pairs) > MAX_QUERY_PARAMETERS:
        raise _bad("query", f"more than {MAX_QUERY_PARAMETERS} parameters")
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        key = _text(unquote_to_bytes(name.replace(b"+", b" ")), "query parameter name", 64)
        _text(unquote_to_bytes(value.replace(b"+", b" ")), f"query parameter {key!r}",
              MAX_QUERY_VALUE_CHARS)  # fmt: skip


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class Boundary:
    """Pure ASGI middleware (it must see the body before FastAPI parses it)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            try:  # the route authenticates; kinds and cursors are validated by the route
                check_path(scope)
                check_query(scope.get("query_string", b""))
            except Refused:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app: FastAPI = scope["app"]
        state = scope.setdefault("state", {})
        who: Principal | None = None
        try:
            check_path(scope)
            check_query(scope.get("query_string", b""))
            if scope["path"].startswith("/v1/") or scope["path"] == "/v1":
                who = await self._authenticate(app, scope)
                state[PRINCIPAL] = who
            if scope["method"] in _BODY_METHODS:
                receive = await self._bounded_body(scope, receive)
        except Refused as refused:
            await self._refuse(app, scope, send, refused, who)
            return
        except Problem as problem:  # 401, 429, 503 from authentication
            await self._send(scope, send, problem)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, app: FastAPI, scope: Scope) -> Principal:
        header = _header(scope, b"authorization")
        if header is not None and len(header) > MAX_AUTHORIZATION_BYTES:
            raise Refused(
                401, "unauthorized", "Authentication required", "the bearer token is too long"
            )
        try:
            text = None if header is None else header.decode("ascii")
        except UnicodeDecodeError:
            text = None
        return await authenticate(app, bearer_token(text))

    async def _bounded_body(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body (at most max_body_bytes) and hand it on as one message."""
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                raise _bad("Content-Length", "not a number")
            if int(length) > self.max_body_bytes:
                raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay([], receive, disconnected=True)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return _replay(chunks, receive)

    def _too_large(self) -> Refused:
        return Refused(
            413, "body-too-large", "Request body too large",
            f"the body may have at most {self.max_body_bytes} bytes",
        )  # fmt: skip

    async def _refuse(
        self, app: FastAPI, scope: Scope, send: Send, refused: Refused, who: Principal | None
    ) -> None:
        state = scope.get("state", {})
        problem = refused.problem
        if who is None:
            log.warning("refused at the boundary: %s %s", problem.status, problem.detail)
        else:  # an authenticated caller: the refusal is a decision of the audit log
            async with app.state.sessions.begin() as session:
                await audit.record(
                    session, subject=who.subject, tenant=who.tenant, roles=sorted(who.roles),
                    action=scope["method"].lower()[:32], resource_kind="request",
                    resource_id=None, allowed=False, reason=f"{problem.title}: {problem.detail}",
                    request_id=state.get("request_id"),
                    client_request_id=state.get("client_request_id"),
                )  # fmt: skip
        await self._send(scope, send, problem)

    @staticmethod
    async def _send(scope: Scope, send: Send, problem: Problem) -> None:
        response = problem_response(
            problem.status, problem.slug, problem.title, problem.detail, problem.headers,
            **problem.extra,
        )  # fmt: skip

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


def _replay(chunks: list[bytes], then: Receive, *, disconnected: bool = False) -> Receive:
    """The body read as one message, then the server's own messages (its disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if disconnected:
            return {"type": "http.disconnect"}
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await then()

    return receive
