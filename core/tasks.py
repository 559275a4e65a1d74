"""Running a connection's halves (e.g. a WebSocket's send and receive loops) until one ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def until_first(
    *halves: Coroutine[Any, Any, None], expected: tuple[type[BaseException], ...] = ()
) -> None:
    """Run the coroutines until the first ends, then cancel the rest; an error other than the
    `expected` ones (a peer going away) is raised."""
    tasks = [asyncio.create_task(half) for half in halves]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            if not isinstance(error, expected):
                raise error
