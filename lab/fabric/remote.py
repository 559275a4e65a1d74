"""Commands on a switch over its SSH login, for the lab's own helpers.

A UML leaf is a kernel of its own: the host cannot enter it as it enters a namespace, so the
lab reaches it as an operator would, as root with the lab's key, host key pinned. One
connection per switch, opened on first use and kept (each command is a channel of it: no
handshake per command); a connection found broken is replaced once.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Sequence

import paramiko

from lab.fabric.topology import FabricError

CONNECT_TIMEOUT = 10.0


class RemoteShell:
    def __init__(
        self, host: str, port: int, username: str, key_file: str, known_hosts: str
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self.key_file, self.known_hosts = key_file, known_hosts
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None

    def run(self, argv: Sequence[str], *, timeout: float = 30.0) -> str:
        return self.script(shlex.join(argv), timeout=timeout)

    def script(self, command: str, *, timeout: float = 30.0) -> str:
        """A shell command line; its stdout, or FabricError with its stderr."""
        try:
            return self._exec(self._connection(), command, timeout)
        except (paramiko.SSHException, EOFError, OSError):
            self.close()  # the switch dropped it (drop_ssh_sessions, a reboot): once more
        try:
            return self._exec(self._connection(), command, timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise FabricError(f"{self.username}@{self.host}: {command}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connection(self) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            if self._client is not None and transport is not None and transport.is_active():
                return self._client
            if self._client is not None:
                self._client.close()
            client = paramiko.SSHClient()
            client.load_host_keys(self.known_hosts)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                key_filename=self.key_file,
                look_for_keys=False,
                allow_agent=False,
                timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT,
            )
            self._client = client
            return client

    def _exec(self, client: paramiko.SSHClient, command: str, timeout: float) -> str:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        code = stdout.channel.recv_exit_status()
        if code != 0:
            raise FabricError(f"{self.host}: {command} exited {code}: {err.strip()}")
        return out
