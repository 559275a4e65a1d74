"""Request ids in the logs: every log record made while a request is served carries its id
(`%(request_id)s`, "-" outside requests), and each request gets one access line."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from fastapi import Request, Response

current_request_id: ContextVar[str] = ContextVar("request_id", default="-")
access_log = logging.getLogger("metalplane.access")
_installed = False


def install_record_factory() -> None:
    """Stamp every log record of this process with the current request id (once)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def with_request_id(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)  # type: ignore[arg-type]
        record.request_id = current_request_id.get()
        return record

    logging.setLogRecordFactory(with_request_id)
    _installed = True


async def log_request(
    request: Request, request_id: str, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    token = current_request_id.set(request_id)
    started = time.perf_counter()
    try:
        response = await call_next(request)
        access_log.info(
            "%s %s %d %.1fms", request.method, request.url.path, response.status_code,
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        return response
    finally:
        current_request_id.reset(token)
