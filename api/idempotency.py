"""`Idempotency-Key` on POST: the same key and body replays the first response; the same key
with another body (or endpoint) is a 422. Keys are per tenant and authenticated subject and live
24 h. Replays are requests like any other: the boundary has authenticated the caller and
charged its rate limit before this runs.

Concurrent repeats wait for the first request to finish, so a create retried five times at
once makes one resource. A first request that fails on our side (5xx or an exception) frees
its key for a retry; 2xx and 4xx answers are final and replayed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from identity.oidc import Principal
from inventory import idempotency

from .problems import problem_response

_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, as IETF draft idempotency-key
WAIT_FOR_FIRST_SECONDS = 30.0


async def idempotent_post(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    key = request.headers.get("idempotency-key")
    if request.method != "POST" or key is None:
        return await call_next(request)
    if not _KEY.fullmatch(key):
        return problem_response(
            400, "invalid-idempotency-key", "Invalid Idempotency-Key",
            "use 1-255 printable ASCII characters, e.g. a UUID",
        )  # fmt: skip
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:  # outside /v1: no caller to scope the key by
        return await call_next(request)
    method_path = f"{request.method} {request.url.path}"
    digest = hashlib.sha256(method_path.encode() + b"\n" + await request.body()).hexdigest()
    sessions = request.app.state.sessions
    ident = {"tenant": who.tenant or "", "subject": who.subject, "key": key}
    deadline = time.monotonic() + WAIT_FOR_FIRST_SECONDS
    while True:
        async with sessions.begin() as session:
            earlier = await idempotency.claim(
                session, method_path=method_path, body_sha256=digest, **ident
            )
        if earlier is None:
            break  # ours: run it
        if earlier.body_sha256 != digest:
            return problem_response(
                422, "idempotency-key-reused", "Idempotency-Key reused",
                f"key {key!r} was used for another request ({earlier.method_path})",
            )  # fmt: skip
        if earlier.status is not None:
            return Response(
                content=earlier.response_body, status_code=earlier.status,
                media_type=earlier.content_type, headers={"Idempotent-Replayed": "true"},
            )  # fmt: skip
        if time.monotonic() > deadline:
            return problem_response(
                409, "request-in-progress", "Request in progress",
                f"the first request with key {key!r} has not finished", {"Retry-After": "1"},
            )  # fmt: skip
        await asyncio.sleep(0.05)
    try:
        response = await call_next(request)
        body = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
    except BaseException:
        async with sessions.begin() as session:
            await idempotency.release(session, **ident)
        raise
    async with sessions.begin() as session:
        if response.status_code >= 500:
            await idempotency.release(session, **ident)
        else:
            await idempotency.complete(
                session, status=response.status_code, body=body,
                content_type=response.headers.get("content-type", "application/json"), **ident,
            )  # fmt: skip
    return Response(content=body, status_code=response.status_code, headers=dict(response.headers))
