"""A server's serial console over IPMI Serial-over-LAN (IPMI v2 chapter 15), through pyghmi.

pyghmi runs SOL on its process-wide I/O: a session's packets are handled by whoever calls
`Session.wait_for_rsp`, so one thread here keeps calling it for every SOL console of the
process (the console relay). Output reaches the asyncio side through a queue; a BMC that
refuses SOL, drops the session or has another client holding it is a ConsoleError.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pyghmi.ipmi import console as ipmi_console
from pyghmi.ipmi.private import session as ipmi_session

from drivers.bmc import pyghmi_fixes
from drivers.bmc.endpoint import split_host_port
from drivers.bmc.threads import run_blocking

from .base import ConsoleError

ACTIVATE_TIMEOUT = 15.0
_pump_lock = threading.Lock()
_pump: threading.Thread | None = None


def _ensure_pump() -> None:
    """The thread that runs pyghmi's handlers for every SOL session of the process."""
    global _pump
    with _pump_lock:
        if _pump is None:
            pyghmi_fixes.install()
            _pump = threading.Thread(target=_serve, name="ipmi-sol", daemon=True)
            _pump.start()


def _serve() -> None:
    while True:
        try:
            ipmi_session.Session.wait_for_rsp(timeout=0.5)
        except Exception:  # one bad packet must not stop every console
            continue


class SolConsole:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._output: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: see _error
        self._error: str | None = None
        self._console: Any = None

    def _failed(self, message: str) -> None:
        self._error = self._error or message
        self._output.put_nowait(None)

    def _from_bmc(self, data: Any) -> None:
        """pyghmi's handler (its I/O thread): bytes of output, or a dict saying what broke."""
        if isinstance(data, dict):
            self._loop.call_soon_threadsafe(self._failed, str(data.get("error") or data))
        elif data:
            chunk = data if isinstance(data, bytes) else str(data).encode()
            self._loop.call_soon_threadsafe(self._output.put_nowait, chunk)

    @classmethod
    async def open(cls, address: str, username: str, password: str) -> SolConsole:
        _ensure_pump()
        host, port = split_host_port(address)
        sol = cls(asyncio.get_running_loop())
        try:
            sol._console = await run_blocking(
                ipmi_console.Console, host, username, password, sol._from_bmc, port=port
            )
            async with asyncio.timeout(ACTIVATE_TIMEOUT):
                while not sol._console.connected:
                    if not sol._output.empty() and isinstance(sol._output._queue[0], str):  # type: ignore[attr-defined]
                        raise ConsoleError(f"SOL on {address}: {sol._output.get_nowait()}")
                    await asyncio.sleep(0.05)
        except TimeoutError as exc:
            await sol.close()
            raise ConsoleError(
                f"SOL on {address}: not activated in {ACTIVATE_TIMEOUT:g} s"
            ) from exc
        except ConsoleError:
            await sol.close()
            raise
        except Exception as exc:  # pyghmi raises bare exceptions for a bad address, a login
            await sol.close()
            raise ConsoleError(f"SOL on {address}: {exc}") from exc
        return sol

    async def read(self) -> bytes:
        item = await self._output.get()
        if item is None:
            raise ConsoleError(f"SOL: {self._error}")
        return item

    async def write(self, data: bytes) -> None:
        if self._console is None or self._console.broken:
            raise ConsoleError("SOL: not connected")
        await run_blocking(self._console.send_data, data)

    async def close(self) -> None:
        if self._console is not None:
            console, self._console = self._console, None
            try:
                await run_blocking(console.close)
            except Exception:  # the session is gone already: nothing left to deactivate
                pass
