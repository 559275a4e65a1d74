"""The SSH transport of switches, on netmiko.

netmiko is blocking: every call runs in this module's own thread pool (a few slow switches
must not queue behind asyncio's small default executor), one call at a time per switch.

One interactive session per switch, opened on first use and reused. A session that died since
its last use is replaced before the next command, and a read-only command that meets a broken
session is retried once on a fresh one. A configuration command is never resent: after a
failure mid-command the switch's state is unknown, so the error goes up (the Switch rolls the
operation back and the caller retries it, which starts by reading the state).

Two command styles:
- SHELL (Linux + FRR): all commands of one `configure` go in one round trip, chained with
  `&&` behind a step marker each, then the exit status: the first failing command is known by
  its step and stops the rest. netmiko's config mode means nothing on a shell (and breaks for
  a uid-0 user not named root), so it is not used.
- CLI (vendor NOS): netmiko's config mode; a command is refused when the output matches the
  dialect's error pattern.

Credentials never reach a log line or an error message: errors name `user@host:port` only.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ParamSpec, TypeVar

import paramiko
from netmiko import BaseConnection
from netmiko.exceptions import (
    ConfigInvalidException,
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
)
from netmiko.ssh_dispatcher import CLASS_MAPPER

from drivers.switch.base import (
    SwitchAuthError,
    SwitchCommandFailed,
    SwitchError,
    SwitchUnreachable,
)

log = logging.getLogger("metalplane.switch.ssh")

P = ParamSpec("P")
T = TypeVar("T")

SWITCH_THREADS = 16
_executor = ThreadPoolExecutor(max_workers=SWITCH_THREADS, thread_name_prefix="switch-ssh")

# Commands per round trip are bounded all the same (readline takes long lines, echo is off).
MAX_SHELL_LINE = 8000
# Markers around each command's output, tagged with a nonce per round trip (an answer is
# only ever taken from its own round trip), printed by printf formats so that they never
# appear literally in a command line.
_STEP_MARK = "printf '\\n__%s=%d\\n' mp{nonce}_step {step}"
_STATUS_MARK = "printf '\\n__%s=%d\\n' mp{nonce}_rc $?"
# Set once per session: no echo (netmiko's check of the echoed command fails on lines wider
# than the terminal: the output is read up to the prompt and parsed by markers instead), no
# history expansion of `!`, no history written to a root home the lab's switches share,
# messages in English for the error texts.
_SHELL_SETUP = "stty -echo; set +H; unset HISTFILE; export LC_ALL=C"
# Failures of the session itself (as opposed to a command's refusal).
_SESSION_ERRORS = (OSError, EOFError, paramiko.SSHException, ReadException)


class CommandStyle(StrEnum):
    SHELL = "shell"
    CLI = "cli"


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. `known_hosts`: pin host keys (None accepts any key)."""

    host: str
    username: str
    port: int = 22
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    known_hosts: str | None = None
    device_type: str = "linux"
    connect_timeout: float = 10.0
    command_timeout: float = 30.0

    def __str__(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


async def _in_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(_executor, call)


class SshTransport:
    """A switch's SSH session (drivers.switch.base.Transport)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        style: CommandStyle = CommandStyle.SHELL,
        error_pattern: str | None = None,
        permanent_errors: Sequence[str] = (),
    ) -> None:
        """`error_pattern` (CLI): output that means refused. `permanent_errors`: regexes of
        refusals that no retry can fix (e.g. a kernel without a feature)."""
        self.target = target
        self.style = style
        self.error_pattern = error_pattern
        self._permanent = [re.compile(p) for p in permanent_errors]
        self._lock = threading.Lock()  # one command at a time on the session
        self._conn: BaseConnection | None = None
        self.connects = 0  # sessions opened so far (reuse is observable)

    async def show(self, command: str) -> str:
        return await _in_thread(self._show, command)

    async def configure(self, commands: Sequence[str]) -> None:
        if commands:
            await _in_thread(self._configure, list(commands))

    async def close(self) -> None:
        await _in_thread(self._close)

    # Blocking side, in the pool.

    def _show(self, command: str) -> str:
        with self._lock:
            fresh = self._conn is None or not _alive(self._conn)
            try:
                return self._read(self._session(), command)
            except _SESSION_ERRORS as exc:
                self._drop()
                if fresh:  # a session we just opened broke: the switch is the problem
                    raise self._unreachable(exc) from exc
                log.info("%s: session broke (%s); retrying on a new one", self.target, exc)
            try:
                return self._read(self._session(), command)
            except _SESSION_ERRORS as exc:
                self._drop()
                raise self._unreachable(exc) from exc

    def _configure(self, commands: list[str]) -> None:
        with self._lock:
            conn = self._session()
            try:
                if self.style is CommandStyle.SHELL:
                    for start, batch in _batches(commands):
                        self._run_shell(conn, batch, first_step=start)
                else:
                    self._run_cli_config(conn, commands)
            except _SESSION_ERRORS as exc:
                self._drop()  # its state mid-command is unknown: never reuse it
                raise self._unreachable(exc) from exc

    def _close(self) -> None:
        with self._lock:
            self._drop()

    def _read(self, conn: BaseConnection, command: str) -> str:
        if self.style is CommandStyle.SHELL:
            return self._run_shell(conn, [command], first_step=1)
        output = conn.send_command(command, read_timeout=self.target.command_timeout)
        if self.error_pattern and re.search(self.error_pattern, output):
            raise self._refused(command, output.strip())
        return output

    def _run_shell(self, conn: BaseConnection, commands: list[str], *, first_step: int) -> str:
        """Run commands chained with &&; the output of the last one that ran."""
        nonce = secrets.token_hex(4)
        line = _shell_line(commands, first_step, nonce)
        # The prompt is known (no echo, it never changes): no prompt probe per command.
        raw = conn.send_command(
            line,
            read_timeout=self.target.command_timeout,
            cmd_verify=False,
            auto_find_prompt=False,
        )
        status = re.search(rf"^__mp{nonce}_rc=(\d+)\r?$", raw, re.MULTILINE)
        steps = list(re.finditer(rf"^__mp{nonce}_step=(\d+)\r?$", raw, re.MULTILINE))
        if status is None or not steps:
            raise ReadException(f"no exit status in the shell's answer: {raw[-200:]!r}")
        last = steps[-1]
        output = raw[last.end() : status.start()].strip("\r\n")
        code = int(status.group(1))
        if code != 0:
            failed = commands[int(last.group(1)) - first_step]
            raise self._refused(failed, output.strip(), code=code)
        return output

    def _run_cli_config(self, conn: BaseConnection, commands: list[str]) -> None:
        try:
            conn.send_config_set(
                commands,
                read_timeout=self.target.command_timeout,
                error_pattern=self.error_pattern or "",
            )
        except ConfigInvalidException as exc:
            raise self._refused("configuration", str(exc)) from None

    def _refused(self, command: str, output: str, *, code: int | None = None) -> SwitchError:
        how = "refused" if code is None else f"exited {code}"
        permanent = any(p.search(output) for p in self._permanent)
        return SwitchCommandFailed(
            f"{self.target.host}: `{command}` {how}: {output or '(no output)'}",
            retryable=not permanent,
        )

    def _unreachable(self, exc: BaseException) -> SwitchError:
        return SwitchUnreachable(f"{self.target}: session lost ({type(exc).__name__}: {exc})")

    def _session(self) -> BaseConnection:
        if self._conn is not None and _alive(self._conn):
            return self._conn
        if self._conn is not None:
            log.info("%s: session closed by the peer; reconnecting", self.target)
            self._drop()
        self._conn = self._connect()
        return self._conn

    def _connect(self) -> BaseConnection:
        target = self.target
        started = time.monotonic()
        try:
            conn = _session_class(target.device_type)(
                device_type=target.device_type,
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_keys=target.key_file is not None,
                key_file=target.key_file,
                allow_agent=False,
                ssh_strict=target.known_hosts is not None,
                system_host_keys=False,
                alt_host_keys=target.known_hosts is not None,
                alt_key_file=target.known_hosts or "",
                conn_timeout=target.connect_timeout,
                auth_timeout=target.connect_timeout,
                banner_timeout=target.connect_timeout,
                read_timeout_override=target.command_timeout,
            )
        except NetmikoAuthenticationException:
            raise SwitchAuthError(f"{target}: SSH authentication refused") from None
        except NetmikoTimeoutException as exc:
            raise _connect_error(target, exc) from None
        except _SESSION_ERRORS as exc:
            raise SwitchUnreachable(f"{target}: SSH session setup failed ({exc})") from None
        try:
            if self.style is CommandStyle.SHELL:
                conn.send_command(
                    _SHELL_SETUP, read_timeout=target.command_timeout, cmd_verify=False
                )
        except _SESSION_ERRORS as exc:
            conn.disconnect()
            raise SwitchUnreachable(f"{target}: SSH session setup failed ({exc})") from None
        self.connects += 1
        log.info("%s: connected in %.2fs", target, time.monotonic() - started)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception as exc:  # already broken; nothing more to release
                log.debug("%s: disconnect: %s", self.target, exc)


def _connect_error(target: SshTarget, exc: NetmikoTimeoutException) -> SwitchError:
    """netmiko reports refused connections, timeouts and host key trouble all alike."""
    cause = exc.__context__
    if isinstance(cause, paramiko.BadHostKeyException):
        return SwitchAuthError(f"{target}: host key does not match known_hosts")
    if "not found in known_hosts" in str(exc):
        return SwitchAuthError(f"{target}: host key not in known_hosts")
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).split("\n")[0]
    return SwitchUnreachable(f"{target}: cannot connect ({reason})")


_session_classes: dict[str, type[BaseConnection]] = {}


def _session_class(device_type: str) -> type[BaseConnection]:
    """netmiko's class for the device type, made to notice a session the peer closed.

    netmiko reads a closed channel as "no output yet" and waits for the prompt until its read
    timeout; this raises EOFError at once instead, so a lost session costs no timeout.
    """
    cls = _session_classes.get(device_type)
    if cls is None:
        if device_type not in CLASS_MAPPER:
            raise ValueError(f"netmiko has no device type {device_type!r}")
        base: type[BaseConnection] = CLASS_MAPPER[device_type]

        class Session(base):  # type: ignore[valid-type, misc]
            def read_channel(self) -> str:
                data = super().read_channel()
                channel = getattr(self, "remote_conn", None)
                if not data and isinstance(channel, paramiko.Channel) and not _open(channel):
                    raise EOFError("the switch closed the session")
                return data

        cls = _session_classes[device_type] = Session
    return cls


def _open(channel: paramiko.Channel) -> bool:
    return not (channel.closed or channel.eof_received) or channel.recv_ready()


def _alive(conn: BaseConnection) -> bool:
    """Whether the session still stands, without a round trip (the peer closes by FIN)."""
    channel = conn.remote_conn
    if not isinstance(channel, paramiko.Channel) or channel.closed or channel.eof_received:
        return False
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


def _shell_line(commands: Sequence[str], first_step: int, nonce: str) -> str:
    """`printf step 1 && { c1; } && printf step 2 && { c2; }; printf rc $?`."""
    chain = " && ".join(
        f"{_STEP_MARK.format(nonce=nonce, step=first_step + i)} && {{ {command}; }}"
        for i, command in enumerate(commands)
    )
    return f"{chain}; {_STATUS_MARK.format(nonce=nonce)}"


def _batches(commands: Sequence[str]) -> list[tuple[int, list[str]]]:
    """Split commands into shell lines of at most MAX_SHELL_LINE characters (a single longer
    command goes alone); each batch with the step number of its first command."""
    batches: list[tuple[int, list[str]]] = []
    current: list[str] = []
    size = 0
    start = 1
    for index, command in enumerate(commands, 1):
        cost = len(command) + len(_STEP_MARK) + 12
        if current and size + cost > MAX_SHELL_LINE:
            batches.append((start, current))
            current, size, start = [], 0, index
        current.append(command)
        size += cost
    if current:
        batches.append((start, current))
    return batches
