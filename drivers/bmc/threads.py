"""The threads blocking BMC libraries (pyghmi, sushy) run in.

A pool of their own: asyncio's default executor has min(32, cpus + 4) threads (6 here), so a
few slow BMCs would queue every other BMC call behind them and eat their timeouts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

BMC_THREADS = 64
_executor = ThreadPoolExecutor(max_workers=BMC_THREADS, thread_name_prefix="bmc")


async def run_blocking(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(_executor, call)
