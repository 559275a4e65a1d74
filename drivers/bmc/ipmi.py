"""IPMI (RMCP+ over UDP) power and boot-device control with pyghmi.

pyghmi is synchronous and runs one process-wide I/O thread; each call here runs in a worker
thread in drivers.bmc.threads and is bounded by asyncio.wait_for. Sessions are cached per
(host, port, user) because an RMCP+ login costs four round trips.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as ipmi_command
from pyghmi.ipmi.private import session as ipmi_session

from drivers.bmc import pyghmi_fixes
from drivers.bmc.base import (
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    BootSetting,
    PowerState,
)
from drivers.bmc.endpoint import BmcEndpoint, split_host_port
from drivers.bmc.errors import classify_ipmi
from drivers.bmc.redfish import RedfishDriver
from drivers.bmc.threads import run_blocking

T = TypeVar("T")

IO_WAIT_CAP_SECONDS = 0.01
IO_WAIT_FLOOR_SECONDS = 0.005  # pyghmi loops on 0 s waits when a deadline passed: a spin
IO_WAKEUPS_PER_SECOND = 400  # the cap grows with the waiters so their polls stay under this

_BOOT_FROM_PYGHMI = {"network": BootDevice.NETWORK, "hd": BootDevice.DISK}
_BOOT_TO_PYGHMI = {BootDevice.NETWORK: "network", BootDevice.DISK: "hd", BootDevice.NONE: "default"}

# Chassis Control (netfn 0, cmd 2) directives, IPMI v2 table 28-4.
_CHASSIS_OFF, _CHASSIS_ON, _CHASSIS_RESET, _CHASSIS_SOFT_OFF = 0, 1, 3, 5


def _install_io_wait_cap() -> None:
    """Bound pyghmi's session I/O wait: 5 ms to 10 ms, or longer when many threads wait.

    pyghmi's waiters sometimes miss the I/O thread's wake-up and sleep until their full
    timeout (0.5-1.9 s stalls on ~10% of calls); polling bounds that (p99 ~25 ms). Every poll
    wakes pyghmi's I/O thread, which then walks all waiters, so a fixed 10 ms cap costs CPU
    with the square of the waiting threads (a BMC that drops packets keeps dozens waiting):
    the cap grows so that all waiters together poll at most IO_WAKEUPS_PER_SECOND. Busy
    sessions are woken by each other's packets anyway. The 5 ms floor stops the loops that
    pyghmi runs with a zero wait once a session's deadline has passed, which otherwise spin a
    core until the command's overall timeout. Installed once.
    """
    original = ipmi_session._io_wait
    if getattr(original, "_metalplane_capped", False):
        return
    waiting = 0
    guard = threading.Lock()

    def capped(timeout: float, myaddr: Any = None, evq: Any = None) -> None:
        nonlocal waiting
        with guard:
            waiting += 1
            cap = max(IO_WAIT_CAP_SECONDS, waiting / IO_WAKEUPS_PER_SECOND)
        try:
            original(max(IO_WAIT_FLOOR_SECONDS, min(timeout, cap)), myaddr, evq)
        finally:
            with guard:
                waiting -= 1

    capped._metalplane_capped = True  # type: ignore[attr-defined]
    ipmi_session._io_wait = capped


_install_io_wait_cap()


def _merge_session_table_locks() -> None:
    """Guard pyghmi's two session tables with one re-entrant lock.

    pyghmi takes WAITING_SESSIONS then KEEPALIVE_SESSIONS on a timeout (_timedout -> logout ->
    send_payload) but KEEPALIVE then WAITING when sending (send_payload -> _xmit_packet): two
    threads deadlock. Both only guard short bookkeeping, so one lock costs no concurrency.
    """
    ipmi_session.WAITING_SESSIONS = ipmi_session.KEEPALIVE_SESSIONS


_merge_session_table_locks()
pyghmi_fixes.install()

_SessionKey = tuple[str, int, str]
_sessions: dict[_SessionKey, tuple[str, ipmi_command.Command, float]] = {}
IDLE_RELOGIN_SECONDS = 20.0
_session_locks: dict[_SessionKey, threading.Lock] = {}
_sessions_guard = threading.Lock()


def _session_lock(key: _SessionKey) -> threading.Lock:
    with _sessions_guard:
        return _session_locks.setdefault(key, threading.Lock())


def _alive(cmd: ipmi_command.Command) -> bool:
    sess = cmd.ipmi_session
    return bool(sess.logged) and not sess.broken


def _purge(sess: Any) -> None:
    """Remove a dead session from pyghmi's tables, or the next Command() would adopt it."""
    try:
        sess.broken = True
        # A thread still inside pyghmi on this session (logging in, awaiting a response) loops
        # while the session looks alive, and with the session gone from the tables nothing
        # times it out: it would spin. These make it give up at once.
        sess.logged = 0
        sess.logging = False
        sess.onlogpayload = None
        if not getattr(sess, "errormsg", None):
            sess.errormsg = "session dropped by metalplane (BMC unreachable)"
        for handlers in list(ipmi_session.Session.bmc_handlers.values()):
            for port, candidate in list(handlers.items()):
                if candidate is sess:
                    handlers.pop(port, None)
        for key, candidate in list(ipmi_session.Session.initting_sessions.items()):
            if candidate is sess:
                ipmi_session.Session.initting_sessions.pop(key, None)
        with ipmi_session.util.protect(ipmi_session.WAITING_SESSIONS):
            ipmi_session.Session.waiting_sessions.pop(sess, None)
        with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
            ipmi_session.Session.keepalive_sessions.pop(sess, None)
    except (AttributeError, RuntimeError):
        pass  # tables changed under us: the session is unreachable either way


def _purge_unlogged(host: str, port: int) -> None:
    """Drop the half-open sessions a failed login to host:port left in pyghmi's tables: their
    retransmission timers otherwise stall every other session's I/O for seconds."""
    with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
        tables = [
            *ipmi_session.Session.waiting_sessions,
            *ipmi_session.Session.keepalive_sessions,
            *ipmi_session.Session.initting_sessions.values(),
            *(s for h in ipmi_session.Session.bmc_handlers.values() for s in h.values()),
        ]
    for sess in {id(s): s for s in tables}.values():
        if getattr(sess, "port", None) == port and getattr(sess, "bmc", None) == host:
            if not getattr(sess, "logged", False):
                _purge(sess)


class IpmiDriver:
    """BmcDriver over IPMI; BIOS calls go to a Redfish driver when the node has one."""

    def __init__(
        self,
        endpoint: BmcEndpoint,
        *,
        timeout: float = 20.0,
        soft_off_wait: float = 10.0,
        poll_interval: float = 0.5,
    ) -> None:
        if endpoint.protocol != "ipmi":
            raise ValueError(f"IpmiDriver needs an ipmi endpoint, got {endpoint.protocol}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.soft_off_wait = soft_off_wait
        self.poll_interval = poll_interval
        self._host, self._port = split_host_port(endpoint.address)
        self._key: _SessionKey = (self._host, self._port, endpoint.username)
        self._bios: RedfishDriver | None = None
        if endpoint.redfish_address:
            self._bios = RedfishDriver(
                BmcEndpoint(
                    protocol="redfish",
                    address=endpoint.redfish_address,
                    username=endpoint.username,
                    password=endpoint.password,
                    verify_tls=endpoint.verify_tls,
                ),
                timeout=timeout,
            )

    def __repr__(self) -> str:
        return f"IpmiDriver({self._host}:{self._port})"

    # -- session handling (worker threads) --------------------------------------------------

    def _command(self) -> ipmi_command.Command:
        with _session_lock(self._key):
            cached = _sessions.get(self._key)
            now = time.monotonic()
            if cached and cached[0] == self.endpoint.password and _alive(cached[1]):
                if now - cached[2] < IDLE_RELOGIN_SECONDS:
                    _sessions[self._key] = (cached[0], cached[1], now)
                    return cached[1]
            if cached:
                # Idle sessions expire on real BMCs (~60 s); a fresh login costs 4 packets,
                # discovering a dead session costs pyghmi's full retry schedule.
                del _sessions[self._key]
                _purge(cached[1].ipmi_session)
            cmd = ipmi_command.Command(
                bmc=self._host,
                userid=self.endpoint.username,
                password=self.endpoint.password,
                port=self._port,
            )
            sess = cmd.ipmi_session
            # pyghmi would re-login *inside* a timed-out command and then wait on its own
            # command lock for ~30 s (nested Set Session Privilege). Let the session fail
            # fast instead; _with_session logs in afresh.
            sess.logontries = 0
            # Its keepalives run from whichever thread pumps pyghmi's loop and can hold the
            # session "in command"; we re-login after idling instead.
            with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
                ipmi_session.Session.keepalive_sessions.pop(sess, None)
            _sessions[self._key] = (self.endpoint.password, cmd, now)
            return cmd

    def _forget(self, cmd: ipmi_command.Command) -> None:
        with _session_lock(self._key):
            cached = _sessions.get(self._key)
            if cached and cached[1] is cmd:
                del _sessions[self._key]
            _purge(cmd.ipmi_session)

    def _login(self, what: str) -> ipmi_command.Command:
        """The cached session, or a new login; lost login packets are retried until the
        call's deadline (pyghmi itself gives up after ~3 s of loss)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._command()
            except Exception as exc:
                _purge_unlogged(self._host, self._port)
                # After a failed login pyghmi stops delivering replies to sessions already
                # open to *other* BMCs in this process (seen: ~9 s stalls, then a fresh login
                # works). Forget the idle ones: the next call on each logs in again (4 packets).
                _forget_idle_sessions()
                error = classify_ipmi(exc, what=f"{what} (login)", login=True)
                if not isinstance(error, BmcUnreachable) or time.monotonic() >= deadline:
                    raise error from exc

    def _with_session(
        self, what: str, op: Callable[[ipmi_command.Command], T], idempotent: bool
    ) -> T:
        """Run op on the cached session until the call's deadline.

        A session that died under op (lost packets beyond pyghmi's own retransmissions, BMC
        reset, idle expiry) is replaced by a new login; op is sent again only if it is
        idempotent (reads, boot device, power to a target state), never a reset.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            cmd = self._login(what)
            try:
                return op(cmd)
            except Exception as exc:  # pyghmi raises TypeError & co. from half-dead sessions
                error = classify_ipmi(exc, what=what)
                if not _alive(cmd) or not isinstance(exc, pyghmi_exc.PyghmiException):
                    self._forget(cmd)
                retry = idempotent and isinstance(error, BmcUnreachable)
                if not retry or time.monotonic() >= deadline:
                    raise error from exc

    async def _call(
        self, what: str, op: Callable[[ipmi_command.Command], T], *, idempotent: bool = True
    ) -> T:
        try:
            return await asyncio.wait_for(
                run_blocking(self._with_session, what, op, idempotent), timeout=self.timeout
            )
        except TimeoutError as exc:
            raise BmcUnreachable(f"{what}: no answer from {self!r} in {self.timeout}s") from exc

    @staticmethod
    def _raw(
        cmd: ipmi_command.Command, netfn: int, command: int, data: tuple[int, ...] = ()
    ) -> Any:
        # xraw_command raises IpmiException carrying the completion code.
        return cmd.xraw_command(netfn=netfn, command=command, data=data)

    # -- power ------------------------------------------------------------------------------

    async def get_power_state(self) -> PowerState:
        # Get Chassis Status directly: Command.get_power would first probe the vendor (OEM).
        rsp = await self._call("get power state", lambda c: self._raw(c, 0, 1))
        return PowerState.ON if rsp["data"][0] & 1 else PowerState.OFF

    async def _chassis(self, what: str, directive: int) -> None:
        # On/off/soft-off name a target state and may be re-sent; a reset must not be.
        idempotent = directive != _CHASSIS_RESET
        await self._call(what, lambda c: self._raw(c, 0, 2, (directive,)), idempotent=idempotent)

    async def power_on(self) -> None:
        if await self.get_power_state() is PowerState.ON:
            return  # idempotent: a retried activity must not power-cycle anything
        await self._chassis("power on", _CHASSIS_ON)

    async def power_off(self, *, soft: bool = False) -> None:
        if await self.get_power_state() is PowerState.OFF:
            return
        if soft:
            await self._chassis("soft power off", _CHASSIS_SOFT_OFF)
            # An OS that has not loaded its ACPI handler loses the request: wait, then force.
            deadline = time.monotonic() + self.soft_off_wait
            while time.monotonic() < deadline:
                await asyncio.sleep(self.poll_interval)
                if await self.get_power_state() is PowerState.OFF:
                    return
        await self._chassis("power off", _CHASSIS_OFF)

    async def reset(self) -> None:
        if await self.get_power_state() is PowerState.OFF:
            await self._chassis("power on (reset of an off node)", _CHASSIS_ON)
            return
        await self._chassis("reset", _CHASSIS_RESET)

    # -- boot device ------------------------------------------------------------------------

    async def get_boot_device(self) -> BootSetting:
        info = await self._call("get boot device", lambda c: c.get_bootdev())
        device = _BOOT_FROM_PYGHMI.get(str(info.get("bootdev")), BootDevice.NONE)
        # pyghmi reports "no override" as persistent 'default'; no override persists nothing.
        persistent = device is not BootDevice.NONE and bool(info.get("persistent", False))
        return BootSetting(device=device, persistent=persistent)

    async def set_boot_device(self, device: BootDevice, *, persistent: bool = False) -> None:
        target = _BOOT_TO_PYGHMI[BootDevice(device)]

        def op(c: ipmi_command.Command) -> None:
            rsp = c.set_bootdev(target, persist=persistent)
            if isinstance(rsp, dict) and "error" in rsp:
                raise pyghmi_exc.IpmiException(str(rsp["error"]))

        await self._call(f"set boot device {target}", op)

    # -- management -------------------------------------------------------------------------

    async def get_bmc_firmware_version(self) -> str:
        # Get Device ID (IPMI v2 20.1): major (7 bits) and minor (BCD) firmware revision.
        rsp = await self._call("get BMC firmware version", lambda c: self._raw(c, 6, 1))
        data = rsp["data"]
        return f"{data[2] & 0x7F}.{data[3] >> 4}{data[3] & 0x0F}"

    # -- BIOS -------------------------------------------------------------------------------

    def _bios_driver(self) -> RedfishDriver:
        if self._bios is None:
            raise BmcUnsupported("IPMI has no standard BIOS settings; enroll a redfish_address")
        return self._bios

    async def get_bios_attributes(self) -> dict[str, str]:
        return await self._bios_driver().get_bios_attributes()

    async def apply_bios_attributes(self, changes: dict[str, str]) -> None:
        await self._bios_driver().apply_bios_attributes(changes)

    async def close(self) -> None:
        # Sessions stay cached for the next driver of the same BMC; only Redfish has state.
        if self._bios is not None:
            await self._bios.close()


def _forget_idle_sessions() -> None:
    """Forget every cached session not in a command right now (those in one finish or fail
    on their own; purging them mid-command would fail that command too)."""
    with _sessions_guard:
        idle = {
            key: entry
            for key, entry in _sessions.items()
            if not entry[1].ipmi_session._isincommand()
        }
        for key in idle:
            del _sessions[key]
    for _, cmd, _ in idle.values():
        _purge(cmd.ipmi_session)
